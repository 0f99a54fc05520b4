"""SA — Shuffle Attention of SA-Net.

Q.-L. Zhang, Y.-B. Yang, "SA-Net: Shuffle Attention for Deep Convolutional Neural Networks", ICASSP 2021.
https://arxiv.org/abs/2102.00240 — authors' code: https://github.com/wofmanaf/SA-Net (``sa_layer``)
"""

from __future__ import annotations

import torch
from torch import nn

from plugattn._checks import check_int
from plugattn._dims import check_spatial_dims
from plugattn.attention._common import GateHolder, check_feature_map, default_groups, spatial_axes
from plugattn.attention.registry import register_attention

__all__ = ["ShuffleAttention"]


@register_attention("sa", paper="Zhang & Yang, ICASSP 2021, SA-Net")
class ShuffleAttention(nn.Module):
    r"""Shuffle attention: per group, a channel half and a spatial half, then a channel shuffle.

    With ``x`` of shape ``(B, C, H, W)``, ``G = groups`` and ``c = C / (2G)``, each group is split into
    two halves ``x_k1``, ``x_k2`` of ``c`` channels (the groups folded into the batch,
    ``(B·G, 2c, H, W)``):

    * (1) channel half: ``s = mean_{H,W}(x_k1)`` ``(c, 1, 1)``; ``x'_k1 = x_k1 · σ(W_1 s + b_1)`` with
      ``W_1, b_1`` per-channel scale and shift (``cweight``, ``cbias``).
    * (2) spatial half: ``x'_k2 = x_k2 · σ(W_2 · GN(x_k2) + b_2)``, ``GroupNorm(c, c)`` (each channel
      normalised on its own), ``W_2, b_2`` per-channel (``sweight``, ``sbias``).
    * (3) ``x'_k = [x'_k1; x'_k2]``; the groups are unfolded back to ``(B, C, H, W)``.
    * (4) channel shuffle with 2 groups: ``(B, 2, C/2, H, W) → (B, C/2, 2, H, W) → (B, C, H, W)``, so
      information flows between the sub-features.

    Args:
        channels: input channels C, a multiple of ``2 · groups``.
        groups: number of groups G. ``None`` (default): the paper's 64 where ``C`` is a multiple of 128,
            else the largest ``G < 64`` with ``C % 2G == 0`` (32 at C=64, 8 at C=16, 12 at C=24), so the
            module fits every backbone width; an explicit value is checked strictly.
        spatial_dims: spatial axes of the input: 1 ``(B, C, L)``, 2 (default) ``(B, C, H, W)``, 3
            ``(B, C, D, H, W)``.
        device, dtype: factory keywords, as torch layers take them.

    In 1-D and 3-D: the pooling of (1) is over every spatial axis, GroupNorm of (2) normalises each
    channel over all its positions, the shuffle of (4) keeps the spatial axes as they are, and the four
    per-channel parameters are ``(1, c, 1)`` or ``(1, c, 1, 1, 1)`` (the same ``c`` numbers). On a map
    with a length-1 axis it equals the module of one dimension less.

    State-dict keys equal the authors' (``cweight``, ``cbias``, ``sweight``, ``sbias`` of shape
    ``(1, c, 1, 1)``, and ``gn``). Parameters: ``4c + 2c = 3C / G``; 12 at C=256, 6 at C=64 (G = 32).
    Gates: ``channel.gate`` (output ``(B·G, c, 1, 1)``) and ``spatial.gate`` (``(B·G, c, H, W)``).

    Init (as the authors' code): ``cweight = 0``, ``cbias = 1``, ``sweight = 0``, ``sbias = 1`` — both
    gates start as the constant ``σ(1)``, so every channel is scaled by 0.731 at the start; GroupNorm
    weight 1, bias 0.

    Differences from the paper:
        * None in function. Global pooling is ``mean`` instead of adaptive pooling (same values).
        * ``channels`` not a multiple of ``2 · groups`` raises ``ValueError`` at construction (the
          authors' code fails in a reshape or silently builds zero-width parameters).
        * ``groups`` left unset adapts to widths the paper's 64 does not divide (the paper uses
          ResNet-50's widths, all multiples of 128) instead of failing; at those widths it is 64.
    """

    def __init__(
        self,
        channels: int,
        *,
        groups: int | None = None,
        spatial_dims: int = 2,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        channels = check_int("channels", channels, minimum=1)
        if groups is None:
            groups = default_groups(channels, 64, per_group=2, argument="groups")
        check_int("groups", groups, minimum=1)
        if channels % (2 * groups) != 0:
            raise ValueError(
                f"channels must be a positive multiple of 2 * groups (each group splits into two "
                f"halves), got channels={channels} with groups={groups}"
            )
        self.spatial_dims = check_spatial_dims(spatial_dims, "ShuffleAttention")
        self.channels = channels
        self.groups = groups
        c = self.half_channels = channels // (2 * groups)
        factory = {"device": device, "dtype": dtype}
        shape = (1, c) + (1,) * spatial_dims  # (1, c, 1, 1) in 2-D
        self.cweight = nn.Parameter(torch.zeros(shape, **factory))
        self.cbias = nn.Parameter(torch.ones(shape, **factory))
        self.sweight = nn.Parameter(torch.zeros(shape, **factory))
        self.sbias = nn.Parameter(torch.ones(shape, **factory))
        self.gn = nn.GroupNorm(c, c, **factory)
        self.channel = GateHolder(nn.Sigmoid())
        self.spatial = GateHolder(nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_feature_map(self, x)
        b, c, size = x.shape[0], x.shape[1], x.shape[2:]  # size: (H, W) in 2-D, (L,) or (D, H, W)
        xg = x.reshape(b * self.groups, 2 * self.half_channels, *size)  # (B·G, 2c, H, W)
        x_c, x_s = xg.chunk(2, dim=1)  # (B·G, c, H, W) each
        s = x_c.mean(dim=spatial_axes(x), keepdim=True)  # (B·G, c, 1, 1)
        x_c = x_c * self.channel.gate(self.cweight * s + self.cbias)  # Eq. (1)
        x_s = x_s * self.spatial.gate(self.sweight * self.gn(x_s) + self.sbias)  # Eq. (2)
        out = torch.cat((x_c, x_s), dim=1).reshape(b, 2, c // 2, *size)  # (B, 2, C/2, H, W)
        return out.transpose(1, 2).reshape(b, c, *size)  # Eq. (4), channel shuffle

    def extra_repr(self) -> str:
        return f"channels={self.channels}, groups={self.groups}"
