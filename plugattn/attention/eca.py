"""ECA — Efficient Channel Attention.

Q. Wang, B. Wu, P. Zhu, P. Li, W. Zuo, Q. Hu, "ECA-Net: Efficient Channel Attention for Deep
Convolutional Neural Networks", CVPR 2020.
https://arxiv.org/abs/1910.03151 — authors' code: https://github.com/BangguWu/ECANet
"""

from __future__ import annotations

import torch
from torch import nn

from plugattn._checks import check_float, check_int
from plugattn._dims import check_spatial_dims
from plugattn.attention._common import (
    LayerFactory,
    check_feature_map,
    eca_kernel_size,
    eca_rule,
    make_layer,
    spatial_axes,
)
from plugattn.attention.registry import register_attention

__all__ = ["ECA"]


@register_attention("eca", paper="Wang et al., CVPR 2020, ECA-Net")
class ECA(nn.Module):
    r"""Efficient Channel Attention: a channel gate from a 1-D convolution across pooled channels.

    With ``x`` of shape ``(B, C, H, W)``:

    * (1) ``y = mean_{H,W}(x)`` ``(B, C)``.
    * (2) ``ω = σ(conv1d_k(y))``: one input and one output channel, kernel ``k`` sliding across the C
      channels with zero padding ``k // 2``, no bias — ``ω_i = σ(Σ_{j=-k//2}^{k//2} w_j y_{i+j})``
      (paper Eq. 9), ``k`` weights shared by all channels.
    * (3) ``k = ψ(C) = |(log2 C + b) / γ|_odd`` (paper Eq. 12; γ = ``kernel_slope`` = 2,
      b = ``kernel_offset`` = 1: k = 3 for C in 16..64, 5 for 128..1024, 7 for 2048), by
      :func:`plugattn.attention._common.eca_kernel_size`.
    * (4) ``out = x · ω`` per channel.

    Args:
        channels: input channels C.
        kernel_size: odd kernel ``k``; ``None`` (default) uses Eq. 12.
        kernel_slope, kernel_offset: Eq. 12's γ and b (defaults 2 and 1). Their old names ``gamma`` and
            ``b`` still work, with a ``FutureWarning``.
        gate_layer: class or zero-argument factory of the gate (default ``nn.Sigmoid``).
        spatial_dims: spatial axes of the input: 1 ``(B, C, L)``, 2 (default) ``(B, C, H, W)``, 3
            ``(B, C, D, H, W)``.
        device, dtype: factory keywords, as torch layers take them.

    In 1-D and 3-D: (1) averages over every spatial axis (``L``, or ``D, H, W``); the conv of (2) runs
    across channels, so it is the same ``Conv1d`` in every dimension (same weights), and the gate of (4)
    is reshaped to ``(B, C, 1)`` or ``(B, C, 1, 1, 1)``. On a map with a length-1 axis it equals the
    module of one dimension less.

    Parameters: ``k``. Submodules ``conv``, ``gate`` (as in the authors' code and timm's ``EcaModule``,
    so their weights load); ``gate`` outputs ``ω`` as ``(B, 1, C)``.

    Differences from the paper:
        * None in function. The authors' ResNet builders pass a fixed ``k_size`` per stage instead of
          Eq. 12; pass ``kernel_size`` to reproduce them. timm clamps ``k >= 3``, which only differs for
          C < 8 (Eq. 12 gives k = 1 there; we keep it).
    """

    def __init__(
        self,
        channels: int,
        *,
        kernel_size: int | None = None,
        kernel_slope: float = 2,
        kernel_offset: float = 1,
        gate_layer: LayerFactory = nn.Sigmoid,
        spatial_dims: int = 2,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        gamma: float | None = None,
        b: float | None = None,
    ) -> None:
        super().__init__()
        channels = check_int("channels", channels, minimum=1)
        slope, offset = eca_rule("ECA", kernel_slope, kernel_offset, gamma, b)
        check_float("kernel_slope", slope, low=0, low_open=True)
        check_float("kernel_offset", offset)
        if kernel_size is None:
            kernel_size = eca_kernel_size(channels, slope, offset)
        check_int("kernel_size", kernel_size, minimum=1, odd=True)
        self.spatial_dims = check_spatial_dims(spatial_dims, "ECA")
        self.channels = channels
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(
            1, 1, kernel_size, padding=kernel_size // 2, bias=False, device=device, dtype=dtype
        )
        self.gate = make_layer("gate_layer", gate_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_feature_map(self, x)
        y = x.mean(dim=spatial_axes(x)).unsqueeze(1)  # (B, 1, C): the channels are the conv's sequence
        w = self.gate(self.conv(y))  # (B, 1, C)
        w = w.transpose(1, 2)  # (B, C, 1)
        for _ in range(self.spatial_dims - 1):
            w = w.unsqueeze(-1)  # (B, C, 1, 1) in 2-D, (B, C) + (1,) * d
        return x * w

    def extra_repr(self) -> str:
        return f"channels={self.channels}, kernel_size={self.kernel_size}"
