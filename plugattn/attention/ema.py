"""EMA — Efficient Multi-scale Attention.

D. Ouyang, S. He, G. Zhang, M. Luo, H. Guo, J. Zhan, Z. Huang, "Efficient Multi-Scale Attention Module
with Cross-Spatial Learning", ICASSP 2023. https://arxiv.org/abs/2305.13563 — authors' code:
https://github.com/YOLOonMe/EMA-attention-module
"""

from __future__ import annotations

import torch
from torch import nn

from plugattn._checks import check_divisible, check_int
from plugattn._dims import check_spatial_dims, conv_nd
from plugattn.attention._common import GateHolder, check_feature_map, default_groups, spatial_axes
from plugattn.attention.registry import register_attention

__all__ = ["EMA"]


@register_attention("ema", paper="Ouyang et al., ICASSP 2023, EMA")
class EMA(nn.Module):
    r"""Efficient multi-scale attention: grouped 1×1 and 3×3 branches fused by cross-spatial learning.

    With ``x`` of shape ``(B, C, H, W)``, ``G = factor`` groups and ``c = C / G``, each group is a
    sub-feature ``x_g`` of shape ``(c, H, W)`` (the groups are folded into the batch, ``(B·G, c, H, W)``):

    * (1) 1×1 branch: ``p_h = mean_W(x_g)`` ``(c, H, 1)``, ``p_w = mean_H(x_g)`` ``(c, 1, W)``; a shared
      1×1 conv ``c → c`` (with bias) on their concatenation along the spatial axis ``(c, H + W, 1)``,
      split back, ``a_h = σ(·_h)``, ``a_w = σ(·_w)``.
    * (2) ``x_1 = GN(x_g · a_h · a_w)``, ``GroupNorm(c, c)`` (each channel normalised on its own).
    * (3) 3×3 branch: ``x_2 = conv_3×3(x_g)`` ``c → c`` (with bias, padding 1).
    * (4) cross-spatial learning: ``s_i = softmax_c(mean_{H,W}(x_i))`` ``(1, c)``;
      ``w = s_1 · flat(x_2) + s_2 · flat(x_1)`` ``(1, H·W)`` — each branch's channel descriptor weights
      the other branch's map.
    * (5) ``out_g = x_g · σ(w)``; the groups are unfolded back to ``(B, C, H, W)``.

    Args:
        channels: input channels C, a multiple of ``factor``.
        factor: number of groups G. ``None`` (default): the paper's 32 where it divides ``C``, else the
            largest ``G < 32`` dividing ``C`` (16 at C=16, 24 at C=24, 20 at C=40), so the module fits
            every backbone width; an explicit value is checked strictly.
        spatial_dims: spatial axes of the input: 1 ``(B, C, L)``, 2 (default) ``(B, C, H, W)``, 3
            ``(B, C, D, H, W)``.
        device, dtype: factory keywords, as torch layers take them.

    In 1-D and 3-D: (1) has one directional branch per spatial axis, the mean over the other axes
    ``(c, S_i)``, all concatenated along one sequence for the shared ``conv1x1`` and one sigmoid, split,
    and ``x_1 = GN(x_g · Π_i a_i)``; in 1-D the one branch pools nothing, so ``a = σ(conv1x1(x_g))`` is
    a per-position gate. The k×k branch (3) is a ``k^d`` conv, ``c → c`` with padding 1: a ``Conv1d``
    with kernel 3 for a sequence, a 3×3×3 ``Conv3d`` for a volume. (4)-(5) pool and flatten over all
    positions. Same keys; parameters ``4c² + 4c`` in 1-D, ``28c² + 4c`` in 3-D. On a map with a
    length-1 axis the module does not equal the one of a dimension less: that axis's branch in (1)
    pools over every position, a per-channel gate the lower form lacks (the rest agrees, the 3^d
    kernel's outer slices seeing only zero padding there).

    State-dict keys equal the authors' (``conv1x1``, ``conv3x3``, ``gn``).
    Parameters: ``(c² + c) + (9c² + c) + 2c = 10c² + 4c`` with ``c = C / G``; 48 at C=64, 672 at C=256.
    Gates: ``gate`` is the final sigmoid of (5), output ``(B·G, 1, H, W)``; ``directional.gate`` the
    sigmoid of (1), output ``(B·G, c, H + W, 1)`` (``a_h`` then ``a_w`` along the third axis; in 3-D
    ``(B·G, c, D + H + W, 1, 1)``, in 1-D ``(B·G, c, L)``).
    ``softmax`` is the channel softmax of (4) (not an attention map, so not named ``gate``).

    Differences from the paper:
        * None in function. Directional and global pooling are ``mean`` instead of adaptive pooling
          (same values; exports cleanly). The two directional sigmoids run as one call before the split.
        * ``channels`` not a multiple of ``factor`` raises ``ValueError`` at construction (the authors'
          code asserts only ``channels // factor > 0`` and fails later in a reshape).
        * ``factor`` left unset adapts to widths the paper's 32 does not divide instead of failing; at
          those widths it is 32.
        * 1-D and 3-D forms (the paper has images only), as above.
    """

    def __init__(
        self,
        channels: int,
        *,
        factor: int | None = None,
        spatial_dims: int = 2,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        channels = check_int("channels", channels, minimum=1)
        if factor is None:
            factor = default_groups(channels, 32, per_group=1, argument="factor groups")
        check_int("factor", factor, minimum=1)
        if channels // factor < 1:
            raise ValueError(
                f"channels must be >= factor (each of the factor={factor} groups needs a channel), "
                f"got channels={channels}"
            )
        check_divisible("channels", channels, factor, "factor")
        self.spatial_dims = check_spatial_dims(spatial_dims, "EMA")
        self.channels = channels
        self.factor = factor
        c = self.group_channels = channels // factor
        factory = {"device": device, "dtype": dtype}
        conv = conv_nd(spatial_dims)
        self.conv1x1 = conv(c, c, 1, **factory)
        self.conv3x3 = conv(c, c, 3, padding=1, **factory)
        self.gn = nn.GroupNorm(c, c, **factory)
        self.directional = GateHolder(nn.Sigmoid())
        self.softmax = nn.Softmax(dim=-1)
        self.gate = nn.Sigmoid()

    def _directional(self, xg: torch.Tensor) -> torch.Tensor:
        """``x_g · Π_i a_i``: Eq. (1)'s gates, one per spatial axis, applied to ``x_g``."""
        axes = spatial_axes(xg)
        pooled = []
        for axis in axes:
            p = xg.mean(dim=tuple(a for a in axes if a != axis), keepdim=True) if len(axes) > 1 else xg
            pooled.append(p if axis == 2 else p.transpose(2, axis))  # 2-D: (B·G, c, H, 1), (B·G, c, W, 1)
        a = self.directional.gate(self.conv1x1(torch.cat(pooled, dim=2)))  # (B·G, c, H + W, 1) in 2-D
        out, start = xg, 0
        for axis, p in zip(axes, pooled, strict=True):
            # Slices, not a.split: torch 2.13's inductor miscomputes this graph's backward with split.
            a_i = a.narrow(2, start, p.shape[2])  # 2-D: a_h (B·G, c, H, 1), then (B·G, c, W, 1)
            out = out * (a_i if axis == 2 else a_i.transpose(2, axis))  # a_w back on its axis: (·, 1, W)
            start = start + p.shape[2]
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_feature_map(self, x)
        b, c, size = x.shape[0], x.shape[1], x.shape[2:]  # size: (H, W) in 2-D, (L,) or (D, H, W)
        bg, cg = b * self.factor, self.group_channels
        xg = x.reshape(bg, cg, *size)  # (B·G, c, H, W)
        x1 = self.gn(self._directional(xg))  # Eq. (2)
        x2 = self.conv3x3(xg)  # Eq. (3)
        axes = spatial_axes(x)
        s1 = self.softmax(x1.mean(dim=axes).unsqueeze(1))  # (B·G, 1, c)
        s2 = self.softmax(x2.mean(dim=axes).unsqueeze(1))  # (B·G, 1, c)
        weights = s1 @ x2.flatten(2) + s2 @ x1.flatten(2)  # (B·G, 1, H·W)
        weights = self.gate(weights.reshape(bg, 1, *size))  # (B·G, 1, H, W), Eq. (5)
        return (xg * weights).reshape(b, c, *size)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, factor={self.factor}"
