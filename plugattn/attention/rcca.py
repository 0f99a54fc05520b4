"""RCCA — recurrent criss-cross attention of CCNet.

Z. Huang, X. Wang, L. Huang, C. Huang, Y. Wei, W. Liu, "CCNet: Criss-Cross Attention for Semantic
Segmentation", ICCV 2019. https://arxiv.org/abs/1811.11721 — authors' code:
https://github.com/speedinghzl/CCNet (``CrissCrossAttention``, pure-PyTorch version).
"""

from __future__ import annotations

import torch
from torch import nn

from plugattn._checks import check_int
from plugattn.attention._common import check_feature_map, reduced_channels
from plugattn.attention.registry import register_attention

__all__ = ["CrissCross"]


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
        device, dtype: factory keywords, as torch layers take them.

    Parameters: ``2·(C·C' + C') + (C² + C) + 1``; 5201 at C=64, 82241 at C=256 (independent of R).
    Gate: ``gate`` is the softmax of (3), output ``(B, H, W, H + W)`` (the first H entries over the
    column, the last W over the row; the masked self entry of the column is 0). It fires R times.

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
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        channels = check_int("channels", channels, minimum=1)
        check_int("recurrence", recurrence, minimum=1)
        self.channels = channels
        self.recurrence = recurrence
        self.rd_channels = reduced_channels(channels, rd_ratio, rd_channels)
        factory = {"device": device, "dtype": dtype}
        self.query_conv = nn.Conv2d(channels, self.rd_channels, 1, **factory)
        self.key_conv = nn.Conv2d(channels, self.rd_channels, 1, **factory)
        self.value_conv = nn.Conv2d(channels, channels, 1, **factory)
        self.gamma = nn.Parameter(torch.zeros(1, **factory))
        self.gate = nn.Softmax(dim=-1)

    def _criss_cross(self, x: torch.Tensor) -> torch.Tensor:
        h = x.shape[2]
        q, k = self.query_conv(x), self.key_conv(x)  # (B, C', H, W) each
        v = self.value_conv(x)  # (B, C, H, W)
        energy_h = torch.einsum("bchw,bcgw->bhwg", q, k)  # (B, H, W, H): u=(h, w) with (g, w)
        energy_w = torch.einsum("bchw,bchv->bhwv", q, k)  # (B, H, W, W): u=(h, w) with (h, v)
        # The self position is in both; drop it from the column so it is counted once.
        rows = torch.arange(h, device=x.device)
        self_mask = (rows[:, None] == rows[None, :]).unsqueeze(1)  # (H, 1, H): [h, ·, g] = (g == h)
        energy_h = energy_h.masked_fill(self_mask, float("-inf"))
        attn = self.gate(torch.cat((energy_h, energy_w), dim=-1))  # (B, H, W, H + W), Eq. (3)
        attn_h, attn_w = attn[..., :h], attn[..., h:]
        out = torch.einsum("bhwg,bcgw->bchw", attn_h, v) + torch.einsum("bhwv,bchv->bchw", attn_w, v)
        return x + self.gamma * out  # Eq. (4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_feature_map(self, x)
        for _ in range(self.recurrence):
            x = self._criss_cross(x)
        return x

    def extra_repr(self) -> str:
        return f"channels={self.channels}, rd_channels={self.rd_channels}, recurrence={self.recurrence}"
