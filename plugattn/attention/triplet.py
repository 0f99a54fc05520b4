"""Triplet Attention.

D. Misra, T. Nalamada, A. U. Arasanipalai, Q. Hou, "Rotate to Attend: Convolutional Triplet Attention
Module", WACV 2021. https://arxiv.org/abs/2010.03045 — authors' code:
https://github.com/landskape-ai/triplet-attention
"""

from __future__ import annotations

import torch
from torch import nn

from plugattn._checks import check_int
from plugattn._dims import check_spatial_dims
from plugattn.attention._common import ConvNormGate, check_feature_map
from plugattn.attention.registry import register_attention

__all__ = ["TripletAttention", "TripletBranch"]

# The branch that rotates each spatial axis into the pooled (channel) position, by the axis's letter:
# a 1-D signal's L is the last axis (W), a volume adds D in front, so the 1-D branch names are a subset
# of the 2-D ones (the paper's) and those a subset of the 3-D ones.
_ROTATED_BRANCHES = {"d": "dc", "h": "hc", "w": "cw"}
_AXIS_LETTERS = ("d", "h", "w")


class TripletBranch(ConvNormGate):
    """One branch: Z-pool → ``Conv2d(2, 1, k, no bias)`` → BatchNorm → sigmoid.

    ``forward(z)`` takes the Z-pooled descriptor ``(B, 2, P, Q)`` (max first, then mean, as the authors'
    ``ChannelPool``) and returns the attention map ``(B, 1, P, Q)``; the caller rotates it back. With
    ``spatial_dims`` other than 2 the conv and norm have that many axes: ``(B, 2, *R)`` → ``(B, 1, *R)``.
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

    The rotations are the authors' permutations (``(0, 2, 1, 3)`` and ``(0, 3, 2, 1)``: each swaps C with
    the rotated axis). Since the pooled axis is reduced, each branch is computed without moving ``x``:
    the Z-pool is taken along H (resp. W) directly and only the small map is laid out as the rotated
    branch sees it, then permuted back — the same function as rotate → pool → conv → multiply → rotate
    back.

    In 1-D and 3-D: one branch per axis of ``(C, *spatial)``. The branch of a spatial axis swaps it with C
    (the rotation above), Z-pools it and convolves the remaining axes — C in the rotated axis's place —
    with a ``spatial_dims``-D conv (kernel ``k`` in every axis) + BatchNorm + sigmoid; the spatial branch
    Z-pools C. The branches are averaged. A signal ``(B, C, L)`` has two branches, ``cw`` (map over C)
    and ``hw`` (map over L); a volume ``(B, C, D, H, W)`` four, ``dc`` (map over ``(C, H, W)``), ``hc``
    (``(D, C, W)``), ``cw`` (``(D, H, C)``) and ``hw`` (``(D, H, W)``). So the state-dict keys are those
    of 2-D less ``hc.*`` in 1-D and plus ``dc.*`` in 3-D. This is not the 2-D module on a map of one row
    or one slice: there, the branch that pools the length-1 axis adds a term of its own (in 2-D on
    ``(B, C, 1, L)``, ``3·out = 2·out_1D + y_hc`` with the 1-D kernels the 2-D kernels' middle rows).

    Args:
        channels: input channels C (the module has no channel-dependent parameters; taken for the common
            signature).
        kernel_size: odd kernel of each branch's conv (default 7).
        no_spatial: drop the spatial branch and average the rotated ones (default ``False``).
        spatial_dims: 1 for signals ``(B, C, L)``, 2 (default) for images ``(B, C, H, W)``, 3 for
            volumes ``(B, C, D, H, W)``.
        device, dtype: factory keywords, as torch layers take them.

    Submodules and gates: ``hc`` (the C–H branch), ``cw`` (the C–W branch) and ``hw`` (the spatial
    branch, absent with ``no_spatial``) are :class:`TripletBranch` es, each with its sigmoid as
    ``<branch>.gate`` (maps ``(B, 1, C, W)``, ``(B, 1, H, C)`` and ``(B, 1, H, W)``).
    Parameters: ``3 · (2k² + 2)`` (conv + BN affine): 300 with k=7, whatever C; 200 with ``no_spatial``;
    in general ``(d + 1) · (2k^d + 2)`` for ``d = spatial_dims``, one branch fewer with ``no_spatial``.

    Differences from the paper:
        * None in function. BatchNorm uses the authors' ``momentum=0.01`` (the paper does not state it).
    """

    def __init__(
        self,
        channels: int,
        *,
        kernel_size: int = 7,
        no_spatial: bool = False,
        spatial_dims: int = 2,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        channels = check_int("channels", channels, minimum=1)
        self.spatial_dims = check_spatial_dims(spatial_dims, "TripletAttention")
        check_int("kernel_size", kernel_size, minimum=1, odd=True)
        if not isinstance(no_spatial, bool):
            raise ValueError(f"no_spatial must be True or False, got {no_spatial!r}")
        self.channels = channels
        self.kernel_size = kernel_size
        self.no_spatial = no_spatial
        factory = {"spatial_dims": spatial_dims, "device": device, "dtype": dtype}
        # (branch name, the axis of x it rotates into the pooled position), axes in order.
        letters = _AXIS_LETTERS[-spatial_dims:]
        self._rotated = tuple((_ROTATED_BRANCHES[a], 2 + i) for i, a in enumerate(letters))
        for name, _ in self._rotated:
            self.add_module(name, TripletBranch(kernel_size, **factory))
        self.hw = None if no_spatial else TripletBranch(kernel_size, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_feature_map(self, x)
        y = None
        for name, axis in self._rotated:
            # The rotated view x.transpose(1, axis) pools over `axis`; its map lies on the remaining
            # axes with C in `axis`'s place: (B, 1, C, W) for H and (B, 1, H, C) for W in 2-D.
            a = getattr(self, name)(_z_pool(x, axis).movedim(2, axis))
            term = x * a.transpose(1, axis)  # rotated back: (B, C, ...) with 1 at `axis`
            y = term if y is None else y + term
        if self.hw is None:
            return y * (1 / len(self._rotated))
        a_hw = self.hw(_z_pool(x, 1))  # (B, 1, *S)
        return (y + x * a_hw) * (1 / (len(self._rotated) + 1))

    def extra_repr(self) -> str:
        return f"channels={self.channels}, kernel_size={self.kernel_size}, no_spatial={self.no_spatial}" + (
            f", spatial_dims={self.spatial_dims}" if self.spatial_dims != 2 else ""
        )
