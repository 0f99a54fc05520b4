"""Dimension-generic pieces of the blocks: the bias-free conv and the shortcuts, by ``spatial_dims``.

One block class serves signals ``(B, C, L)``, images ``(B, C, H, W)`` and volumes ``(B, C, D, H, W)``:
``spatial_dims`` (1, 2 or 3; 2 by default) picks the layer types through :mod:`plugattn._dims`, so a
2-D block is exactly what it was before (same layers, same state-dict keys). :class:`ShortcutA` is He
et al. 2016's parameter-free "option A" shortcut for the CIFAR ResNets
(https://arxiv.org/abs/1512.03385), subsampling every spatial axis.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from plugattn._checks import check_choice
from plugattn._dims import batch_norm_nd, conv_nd

__all__ = ["SHORTCUTS", "ShortcutA", "conv_no_bias", "make_shortcut"]

# "A": He et al.'s parameter-free option A (subsample + zero-pad channels); "B": 1×1 conv (+ BN) projection.
SHORTCUTS = ("A", "B")


def conv_no_bias(
    in_chs: int,
    out_chs: int,
    kernel_size: int,
    stride: int = 1,
    groups: int = 1,
    *,
    spatial_dims: int = 2,
    **factory: Any,
) -> nn.Module:
    """A "same"-padded conv without bias (a norm follows it); ``nn.Conv2d`` unless ``spatial_dims`` says."""
    return conv_nd(spatial_dims)(
        in_chs, out_chs, kernel_size, stride, kernel_size // 2, groups=groups, bias=False, **factory
    )


class ShortcutA(nn.Module):
    """He et al. 2016's option-A shortcut: ``x[:, :, ::s, ::s]`` with zero channels padded on both sides.

    Parameter-free; the padding is split as evenly as possible (16 → 32 channels: 8 zero channels
    before, 8 after, as the reference CIFAR implementations do). Every axis after the channels is
    subsampled, so the same module serves 1-D, 2-D and 3-D maps.
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int) -> None:
        super().__init__()
        if out_chs < in_chs:
            raise ValueError(f"option-A shortcut cannot reduce channels: in_chs={in_chs}, out_chs={out_chs}")
        self.stride = stride
        self.pad_before = (out_chs - in_chs) // 2
        self.pad_after = out_chs - in_chs - self.pad_before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        every_s = (slice(None, None, self.stride),) * (x.dim() - 2)
        x = x[(slice(None), slice(None), *every_s)]  # (B, C_in, ceil(H/s), ceil(W/s)) in 2-D
        return F.pad(x, (0, 0) * (x.dim() - 2) + (self.pad_before, self.pad_after))  # (B, C_out, ...)

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pad=({self.pad_before}, {self.pad_after})"


def make_shortcut(
    kind: str,
    in_chs: int,
    out_chs: int,
    stride: int,
    *,
    norm: bool = True,
    spatial_dims: int = 2,
    **factory: Any,
) -> nn.Module:
    """The shortcut from ``in_chs`` to ``out_chs`` at ``stride``: the identity when the shapes match, else
    option A (:class:`ShortcutA`) or option B (a 1×1 conv, followed by BatchNorm when ``norm``)."""
    check_choice("shortcut", kind, SHORTCUTS)
    if stride == 1 and in_chs == out_chs:
        return nn.Identity()
    if kind == "A":
        return ShortcutA(in_chs, out_chs, stride)
    conv = conv_no_bias(in_chs, out_chs, 1, stride, spatial_dims=spatial_dims, **factory)
    return nn.Sequential(conv, batch_norm_nd(spatial_dims)(out_chs, **factory)) if norm else conv
