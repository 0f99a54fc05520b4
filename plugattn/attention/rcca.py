"""RCCA — recurrent criss-cross attention of CCNet.

Z. Huang, X. Wang, L. Huang, C. Huang, Y. Wei, W. Liu, "CCNet: Criss-Cross Attention for Semantic
Segmentation", ICCV 2019. https://arxiv.org/abs/1811.11721 — authors' code:
https://github.com/speedinghzl/CCNet (``CrissCrossAttention``, pure-PyTorch version).
"""

from __future__ import annotations

import torch
from torch import nn

from plugattn._checks import check_int
from plugattn._dims import check_spatial_dims, conv_nd
from plugattn.attention._common import check_feature_map, reduced_channels
from plugattn.attention.registry import register_attention

__all__ = ["CrissCross"]


def _line_einsums(spatial_dims: int) -> tuple[tuple[str, str], ...]:
    """Per spatial axis, the einsums of the energy and the aggregation along the lines of that axis.

    2-D, positions ``hw``: the column ``bchw,bcnw->bhwn`` (``u = (h, w)`` with ``(n, w)``) and
    ``bhwn,bcnw->bchw``, then the row with ``(h, n)``; 1-D has one line, ``bcw,bcn->bwn``.
    """
    pos = "dhw"[3 - spatial_dims :]
    lines = []
    for i in range(spatial_dims):
        other = pos[:i] + "n" + pos[i + 1 :]  # the line through u along axis i
        lines.append((f"bc{pos},bc{other}->b{pos}n", f"b{pos}n,bc{other}->bc{pos}"))
    return tuple(lines)


@register_attention("rcca", paper="Huang et al., ICCV 2019, CCNet")
class CrissCross(nn.Module):
    r"""Recurrent criss-cross attention: each position attends to its row and its column, R times.

    With ``x`` of shape ``(B, C, H, W)`` and ``C'`` the reduced query/key width, one criss-cross pass:

    * (1) ``Q = W_q x``, ``K = W_k x`` — 1×1 convs ``C → C'`` (with bias), ``V = W_v x`` — 1×1 conv
      ``C → C`` (with bias).
    * (2) affinity of position ``u = (h, w)`` with every position of its criss-cross path
      ``Ω_u = {(h', w)} ∪ {(h, w')}``: ``d_{u,i} = Q_uᵀ K_i``. ``Ω_u`` has ``H + W - 1`` positions: ``u``
      itself is counted once (its column term ``(h, w)`` is masked with ``-inf``, as the authors'
      ``INF`` on the H-branch diagonal).
    * (3) ``A_u = softmax_{i ∈ Ω_u}(d_{u,i})``.
    * (4) ``out_u = x_u + γ · Σ_{i ∈ Ω_u} A_{u,i} V_i``; ``γ`` a learnable scalar initialised to 0.

    Recurrence: the same module (the same weights) is applied ``recurrence`` times,
    ``x ← CCA(x)``, so every position gathers context from the whole image after R = 2.

    Args:
        channels: input channels C.
        recurrence: number of criss-cross passes R (default 2, as the paper and the HAM comparison).
        rd_ratio: query/key width ratio (default 1/8, the paper's ``C / 8``).
        rd_channels: query/key width, overriding ``rd_ratio`` (default ``None``: ``max(1, floor(C/8))``,
            by :func:`plugattn.attention._common.reduced_channels`; C=16 → 2).
        spatial_dims: spatial axes of the input: 1 ``(B, C, L)``, 2 (default) ``(B, C, H, W)``, 3
            ``(B, C, D, H, W)``.
        device, dtype: factory keywords, as torch layers take them.

    In 1-D and 3-D: ``Ω_u`` is every position on the lines through ``u`` along each spatial axis, the
    self position counted once — masked on every line but the last axis's (as the column is in 2-D).
    A volume's position attends to ``D + H + W - 2`` positions (its D line, H line, W line); a sequence
    has one line, so 1-D RCCA is full self-attention along L (nothing masked). The 1×1 convs are convs
    of that dimension (the same numbers). On a map with a length-1 axis it equals the module of one
    dimension less: that axis's line holds only ``u`` itself, which is masked.

    Parameters: ``2·(C·C' + C') + (C² + C) + 1``; 5201 at C=64, 82241 at C=256 (independent of R).
    Gate: ``gate`` is the softmax of (3), output ``(B, H, W, H + W)`` (the first H entries over the
    column, the last W over the row; the masked self entry of the column is 0). It fires R times.
    In 3-D it is ``(B, D, H, W, D + H + W)`` (the D line, then H, then W), in 1-D ``(B, L, L)``.

    State-dict keys equal the authors' (``query_conv``, ``key_conv``, ``value_conv``, ``gamma``).

    Differences from the paper:
        * Only the attention module is built: CCNet's segmentation head around it (the 3×3 conv+BN
          reductions before and after, the concat with the input and the bottleneck) is not part of
          a plug-in block.
        * ``rd_channels`` is at least 1 (the authors' ``C // 8`` is 0 below 8 channels).
        * Implemented with ``einsum`` instead of the CUDA kernel / ``bmm`` reshuffles (same function), so
          it exports to ONNX and compiles with ``fullgraph=True``.
    """

    def __init__(
        self,
        channels: int,
        *,
        recurrence: int = 2,
        rd_ratio: float = 1 / 8,
        rd_channels: int | None = None,
        spatial_dims: int = 2,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        channels = check_int("channels", channels, minimum=1)
        check_int("recurrence", recurrence, minimum=1)
        self.channels = channels
        self.recurrence = recurrence
        self.rd_channels = reduced_channels(channels, rd_ratio, rd_channels)
        self.spatial_dims = check_spatial_dims(spatial_dims, "CrissCross")
        factory = {"device": device, "dtype": dtype}
        conv = conv_nd(spatial_dims)
        self.query_conv = conv(channels, self.rd_channels, 1, **factory)
        self.key_conv = conv(channels, self.rd_channels, 1, **factory)
        self.value_conv = conv(channels, channels, 1, **factory)
        self.gamma = nn.Parameter(torch.zeros(1, **factory))
        self.gate = nn.Softmax(dim=-1)
        self._lines = _line_einsums(spatial_dims)

    def _criss_cross(self, x: torch.Tensor) -> torch.Tensor:
        q, k = self.query_conv(x), self.key_conv(x)  # (B, C', H, W) each
        v = self.value_conv(x)  # (B, C, H, W)
        d = self.spatial_dims
        energies = []
        for i, (energy, _) in enumerate(self._lines):
            e = torch.einsum(energy, q, k)  # (B, H, W, S_i): u with the positions of its line along i
            if i < d - 1:
                # The self position is on every line; keep it on the last one only, so it counts once.
                size = x.shape[2 + i]
                n = torch.arange(size, device=x.device)
                self_mask = (n[:, None] == n[None, :]).reshape((size,) + (1,) * (d - 1 - i) + (size,))
                e = e.masked_fill(self_mask, float("-inf"))  # 2-D: (H, 1, H), [h, ·, g] = (g == h)
            energies.append(e)
        attn = self.gate(torch.cat(energies, dim=-1) if d > 1 else energies[0])  # (B, H, W, H + W), Eq. (3)
        out, start = None, 0
        for i, (_, gather) in enumerate(self._lines):
            # Slices, not attn.split: torch 2.13's inductor miscomputes the backward with split.
            a = attn.narrow(-1, start, x.shape[2 + i]) if d > 1 else attn  # (B, H, W, S_i)
            term = torch.einsum(gather, a, v)  # (B, C, H, W)
            out = term if out is None else out + term
            start = start + x.shape[2 + i]
        return x + self.gamma * out  # Eq. (4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_feature_map(self, x)
        for _ in range(self.recurrence):
            x = self._criss_cross(x)
        return x

    def extra_repr(self) -> str:
        return f"channels={self.channels}, rd_channels={self.rd_channels}, recurrence={self.recurrence}"
