"""EMA — Efficient Multi-scale Attention.

D. Ouyang, S. He, G. Zhang, M. Luo, H. Guo, J. Zhan, Z. Huang, "Efficient Multi-Scale Attention Module
with Cross-Spatial Learning", ICASSP 2023. https://arxiv.org/abs/2305.13563 — authors' code:
https://github.com/YOLOonMe/EMA-attention-module
"""

from __future__ import annotations

import torch
from torch import nn

from plugattn._checks import check_divisible, check_int
from plugattn.attention._common import GateHolder, check_feature_map, default_groups
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
        device, dtype: factory keywords, as torch layers take them.

    State-dict keys equal the authors' (``conv1x1``, ``conv3x3``, ``gn``).
    Parameters: ``(c² + c) + (9c² + c) + 2c = 10c² + 4c`` with ``c = C / G``; 48 at C=64, 672 at C=256.
    Gates: ``gate`` is the final sigmoid of (5), output ``(B·G, 1, H, W)``; ``directional.gate`` the
    sigmoid of (1), output ``(B·G, c, H + W, 1)`` (``a_h`` then ``a_w`` along the third axis).
    ``softmax`` is the channel softmax of (4) (not an attention map, so not named ``gate``).

    Differences from the paper:
        * None in function. Directional and global pooling are ``mean`` instead of adaptive pooling
          (same values; exports cleanly). The two directional sigmoids run as one call before the split.
        * ``channels`` not a multiple of ``factor`` raises ``ValueError`` at construction (the authors'
          code asserts only ``channels // factor > 0`` and fails later in a reshape).
        * ``factor`` left unset adapts to widths the paper's 32 does not divide instead of failing; at
          those widths it is 32.
    """

    def __init__(
        self,
        channels: int,
        *,
        factor: int | None = None,
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
        self.channels = channels
        self.factor = factor
        c = self.group_channels = channels // factor
        factory = {"device": device, "dtype": dtype}
        self.conv1x1 = nn.Conv2d(c, c, 1, **factory)
        self.conv3x3 = nn.Conv2d(c, c, 3, padding=1, **factory)
        self.gn = nn.GroupNorm(c, c, **factory)
        self.directional = GateHolder(nn.Sigmoid())
        self.softmax = nn.Softmax(dim=-1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_feature_map(self, x)
        b, c, h, w = x.shape
        bg, cg = b * self.factor, self.group_channels
        xg = x.reshape(bg, cg, h, w)  # (B·G, c, H, W)
        p_h = xg.mean(dim=3, keepdim=True)  # (B·G, c, H, 1)
        p_w = xg.mean(dim=2, keepdim=True).transpose(2, 3)  # (B·G, c, W, 1)
        a = self.directional.gate(self.conv1x1(torch.cat((p_h, p_w), dim=2)))  # (B·G, c, H + W, 1)
        a_h, a_w = a[:, :, :h], a[:, :, h:].transpose(2, 3)  # (B·G, c, H, 1), (B·G, c, 1, W)
        x1 = self.gn(xg * a_h * a_w)  # Eq. (2)
        x2 = self.conv3x3(xg)  # Eq. (3)
        s1 = self.softmax(x1.mean(dim=(2, 3)).unsqueeze(1))  # (B·G, 1, c)
        s2 = self.softmax(x2.mean(dim=(2, 3)).unsqueeze(1))  # (B·G, 1, c)
        weights = s1 @ x2.reshape(bg, cg, h * w) + s2 @ x1.reshape(bg, cg, h * w)  # (B·G, 1, H·W)
        weights = self.gate(weights.reshape(bg, 1, h, w))  # (B·G, 1, H, W), Eq. (5)
        return (xg * weights).reshape(b, c, h, w)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, factor={self.factor}"
