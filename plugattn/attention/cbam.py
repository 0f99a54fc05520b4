"""CBAM — Convolutional Block Attention Module.

S. Woo, J. Park, J.-Y. Lee, I. S. Kweon, "CBAM: Convolutional Block Attention Module", ECCV 2018.
https://arxiv.org/abs/1807.06521 — authors' code: https://github.com/Jongchan/attention-module
"""

from __future__ import annotations

import torch
from torch import nn

from plugattn._checks import check_int
from plugattn._dims import check_spatial_dims, conv_nd
from plugattn.attention._common import (
    ConvNormGate,
    LayerFactory,
    check_feature_map,
    make_layer,
    reduced_channels,
    spatial_axes,
)
from plugattn.attention.registry import register_attention

__all__ = ["CBAM", "CBAMChannel", "CBAMSpatial"]


class CBAMChannel(nn.Module):
    """CBAM's channel submodule: one MLP shared by the avg- and the max-pooled descriptor, summed.

    ``forward`` takes ``(B, C, *S)`` and returns the channel map ``M_c`` of shape ``(B, C, 1, ...)``
    (``(B, C, 1, 1)`` in 2-D); the caller rescales. The MLP's layers are 1×1 convolutions with
    ``spatial_dims`` axes, so their weights are ``(out, in, 1, ...)``.
    """

    def __init__(
        self,
        channels: int,
        hidden: int,
        *,
        act_layer: LayerFactory = nn.ReLU,
        gate_layer: LayerFactory = nn.Sigmoid,
        spatial_dims: int = 2,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        conv = conv_nd(check_spatial_dims(spatial_dims, "CBAMChannel"))
        self.spatial_dims = spatial_dims
        self.fc1 = conv(channels, hidden, 1, bias=True, **factory)
        self.act = make_layer("act_layer", act_layer)
        self.fc2 = conv(hidden, channels, 1, bias=True, **factory)
        self.gate = make_layer("gate_layer", gate_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Both descriptors through the shared MLP in one call, stacked along the batch.
        axes = spatial_axes(x)
        z = torch.cat((x.mean(dim=axes, keepdim=True), x.amax(dim=axes, keepdim=True)))  # (2B, C, 1, ...)
        y = self.fc2(self.act(self.fc1(z)))  # (2B, C, 1, ...)
        # Slices, not chunk(2): ONNX export with a dynamic batch fails on chunk's SplitToSequence.
        b = x.shape[0]
        return self.gate(y[:b] + y[b:])


class CBAMSpatial(ConvNormGate):
    """CBAM's spatial submodule: ``[max; mean]`` over channels → conv k×k (2→1, no bias) → BN → gate.

    ``forward`` takes ``(B, C, *S)`` and returns the spatial map ``M_s`` of shape ``(B, 1, *S)``
    (``(B, 1, H, W)`` in 2-D); the caller rescales. The conv and BN have ``spatial_dims`` axes.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = torch.cat((x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)), dim=1)  # (B, 2, *S)
        return super().forward(d)  # (B, 1, *S)


@register_attention("cbam", paper="Woo et al., ECCV 2018, CBAM")
class CBAM(nn.Module):
    r"""Convolutional Block Attention Module: a channel gate, then a spatial gate, in sequence.

    With ``x`` of shape ``(B, C, H, W)`` and ``r_c`` hidden units:

    * (1) ``M_c = σ(MLP(AvgPool(x)) + MLP(MaxPool(x)))`` ``(B, C, 1, 1)``, the MLP
      ``W_1 δ(W_0 · + b_0) + b_1`` shared by both branches, ``W_0: r_c×C``, ``δ`` = ReLU (paper Eq. 2).
    * (2) ``x' = M_c ⊗ x`` (paper Eq. 1).
    * (3) ``M_s = σ(BN(f^{7×7}([MaxPool_c(x'); AvgPool_c(x')])))`` ``(B, 1, H, W)``, pooling across
      channels, the conv 2→1 without bias (paper Eq. 3; BN as in the authors' code).
    * (4) ``out = M_s ⊗ x'`` (paper Eq. 1). No residual of its own.

    ``r_c = max(1, floor(C · rd_ratio))`` (the paper's ``C / r``, r = 16) by
    :func:`plugattn.attention._common.reduced_channels`.

    Args:
        channels: input channels C.
        rd_ratio: reduction ratio of the shared MLP (default 1/16), in (0, 1].
        rd_channels: hidden width ``r_c`` directly, overriding ``rd_ratio`` (default ``None``).
        spatial_kernel_size: odd kernel of the spatial conv (default 7).
        act_layer: class or zero-argument factory of the MLP activation (default ``nn.ReLU``).
        gate_layer: class or zero-argument factory of both gates (default ``nn.Sigmoid``).
        spatial_dims: 1 for signals ``(B, C, L)``, 2 (default) for images ``(B, C, H, W)``, 3 for
            volumes ``(B, C, D, H, W)``.
        device, dtype: factory keywords, as torch layers take them.

    In 1-D and 3-D: (1) pools over all spatial axes and the MLP is a pair of 1×1 ``Conv1d``/``Conv3d``;
    (3) pools across channels at every position and convolves with a ``Conv1d``/``Conv3d`` of kernel
    ``k`` in every axis, then ``BatchNorm1d``/``BatchNorm3d``. The same state-dict keys as in 2-D (the
    convs' shapes differ: spatial ``(1, 2, k)`` or ``(1, 2, k, k, k)``, MLP ``(out, in, 1)`` or
    ``(out, in, 1, 1, 1)``); parameters ``2·C·r_c + r_c + C + 2·k^d + 2``. On ``(B, C, 1, L)`` the 2-D
    module equals the 1-D one whose kernel is the middle row of the 2-D kernel (with zero padding the
    other rows only see zeros); on a depth-1 volume the 3-D module equals the 2-D one whose kernel is
    the middle depth slice.

    Parameters: ``2·C·r_c + r_c + C`` (channel) ``+ 2·k² + 2`` (spatial conv, BN affine). Gates:
    ``channel.gate`` outputs ``M_c`` ``(B, C, 1, 1)``, ``spatial.gate`` outputs ``M_s`` ``(B, 1, H, W)``
    (``(B, C, 1, ...)`` and ``(B, 1, *S)`` in any dimension).

    Differences from the paper:
        * The paper has no BatchNorm in the spatial branch; the authors' code (and every reported
          number) has one, with momentum 0.01 and eps 1e-5, which we follow.
        * The MLP's layers are 1×1 convolutions (same function and parameters as the authors' Linear
          layers, whose weights reshape ``(out, in)`` → ``(out, in, 1, 1)``); biases on, as in their code.
        * ``C / r`` is floored (at least 1); the paper does not say how to round.
    """

    def __init__(
        self,
        channels: int,
        *,
        rd_ratio: float = 1 / 16,
        rd_channels: int | None = None,
        spatial_kernel_size: int = 7,
        act_layer: LayerFactory = nn.ReLU,
        gate_layer: LayerFactory = nn.Sigmoid,
        spatial_dims: int = 2,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        channels = check_int("channels", channels, minimum=1)
        self.spatial_dims = check_spatial_dims(spatial_dims, "CBAM")
        hidden = reduced_channels(channels, rd_ratio, rd_channels)
        check_int("spatial_kernel_size", spatial_kernel_size, minimum=1, odd=True)
        factory = {"device": device, "dtype": dtype, "spatial_dims": spatial_dims}
        self.channels = channels
        self.rd_channels = hidden
        self.channel = CBAMChannel(channels, hidden, act_layer=act_layer, gate_layer=gate_layer, **factory)
        self.spatial = CBAMSpatial(spatial_kernel_size, gate_layer=gate_layer, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_feature_map(self, x)
        x = x * self.channel(x)  # (B, C, *S) * (B, C, 1, ...)
        return x * self.spatial(x)  # (B, C, *S) * (B, 1, *S)

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, rd_channels={self.rd_channels}, "
            f"spatial_kernel_size={self.spatial.conv.kernel_size[0]}"
        ) + (f", spatial_dims={self.spatial_dims}" if self.spatial_dims != 2 else "")
