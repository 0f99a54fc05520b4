"""Triplet Attention.

D. Misra, T. Nalamada, A. U. Arasanipalai, Q. Hou, "Rotate to Attend: Convolutional Triplet Attention
Module", WACV 2021. https://arxiv.org/abs/2010.03045 — authors' code:
https://github.com/landskape-ai/triplet-attention
"""

from __future__ import annotations

import torch
from torch import nn

from plugattn._checks import check_int
from plugattn.attention._common import ConvNormGate, check_feature_map
from plugattn.attention.registry import register_attention

__all__ = ["TripletAttention", "TripletBranch"]


class TripletBranch(ConvNormGate):
    """One branch: Z-pool → ``Conv2d(2, 1, k, no bias)`` → BatchNorm → sigmoid.

    ``forward(z)`` takes the Z-pooled descriptor ``(B, 2, P, Q)`` (max first, then mean, as the authors'
    ``ChannelPool``) and returns the attention map ``(B, 1, P, Q)``; the caller rotates it back.
    """


def _z_pool(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``[max_dim(x); mean_dim(x)]`` stacked on a new axis 1 — the paper's Z-pool along ``dim``."""
    return torch.stack((x.amax(dim=dim), x.mean(dim=dim)), dim=1)


@register_attention("triplet", paper="Misra et al., WACV 2021, Triplet Attention")
class TripletAttention(nn.Module):
    r"""Triplet attention: three Z-pool/conv/sigmoid branches over the (C,H), (C,W) and (H,W) planes.

    With ``x`` of shape ``(B, C, H, W)``, ``Z(·)`` the Z-pool ``[max; mean]`` over the axis that plays the
    channel role and ``φ_i = σ(BN_i(conv_k×k,i(·)))``:

    * (1) C–H branch: rotate ``x`` so H plays the channel role (``x̂_1`` of shape ``(B, H, C, W)``);
      ``a_1 = φ_1(Z(x̂_1))`` ``(B, 1, C, W)``; ``y_1 = rotate_back(x̂_1 · a_1)``.
    * (2) C–W branch: rotate so W plays the channel role (``x̂_2`` of shape ``(B, W, H, C)``);
      ``a_2 = φ_2(Z(x̂_2))`` ``(B, 1, H, C)``; ``y_2 = rotate_back(x̂_2 · a_2)``.
    * (3) spatial branch: ``a_3 = φ_3(Z(x))`` ``(B, 1, H, W)``; ``y_3 = x · a_3``.
    * (4) ``out = (y_1 + y_2 + y_3) / 3``; with ``no_spatial=True`` (paper ablation)
      ``out = (y_1 + y_2) / 2``.

    The rotations are the authors' permutations (``(0, 2, 1, 3)`` and ``(0, 3, 2, 1)``). Since the pooled
    axis is reduced, each branch is computed without moving ``x``: the Z-pool is taken along H (resp. W)
    directly and only the small map is laid out as the rotated branch sees it, then permuted back —
    the same function as rotate → pool → conv → multiply → rotate back.

    Args:
        channels: input channels C (the module has no channel-dependent parameters; taken for the common
            signature).
        kernel_size: odd kernel of each branch's conv (default 7).
        no_spatial: drop the spatial branch and average the two rotated ones (default ``False``).
        device, dtype: factory keywords, as torch layers take them.

    Submodules and gates: ``hc`` (the C–H branch), ``cw`` (the C–W branch) and ``hw`` (the spatial
    branch, absent with ``no_spatial``) are :class:`TripletBranch` es, each with its sigmoid as
    ``<branch>.gate`` (maps ``(B, 1, C, W)``, ``(B, 1, H, C)`` and ``(B, 1, H, W)``).
    Parameters: ``3 · (2k² + 2)`` (conv + BN affine): 300 with k=7, whatever C; 200 with ``no_spatial``.

    Differences from the paper:
        * None in function. BatchNorm uses the authors' ``momentum=0.01`` (the paper does not state it).
    """

    def __init__(
        self,
        channels: int,
        *,
        kernel_size: int = 7,
        no_spatial: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        channels = check_int("channels", channels, minimum=1)
        check_int("kernel_size", kernel_size, minimum=1, odd=True)
        if not isinstance(no_spatial, bool):
            raise ValueError(f"no_spatial must be True or False, got {no_spatial!r}")
        self.channels = channels
        self.kernel_size = kernel_size
        self.no_spatial = no_spatial
        factory = {"device": device, "dtype": dtype}
        self.hc = TripletBranch(kernel_size, **factory)
        self.cw = TripletBranch(kernel_size, **factory)
        self.hw = None if no_spatial else TripletBranch(kernel_size, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_feature_map(self, x)
        # C–H: the rotated view (B, H, C, W) pools over H; its map lies on the (C, W) plane.
        a_hc = self.hc(_z_pool(x, 2))  # (B, 1, C, W)
        y = x * a_hc.permute(0, 2, 1, 3)  # (B, C, 1, W)
        # C–W: the rotated view (B, W, H, C) pools over W; its map lies on the (H, C) plane.
        a_cw = self.cw(_z_pool(x, 3).transpose(2, 3))  # (B, 1, H, C)
        y = y + x * a_cw.permute(0, 3, 2, 1)  # (B, C, H, 1)
        if self.hw is None:
            return y * 0.5
        a_hw = self.hw(_z_pool(x, 1))  # (B, 1, H, W)
        return (y + x * a_hw) * (1 / 3)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, kernel_size={self.kernel_size}, no_spatial={self.no_spatial}"
