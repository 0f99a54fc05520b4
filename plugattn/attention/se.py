"""SE — Squeeze-and-Excitation.

J. Hu, L. Shen, G. Sun, "Squeeze-and-Excitation Networks", CVPR 2018 (extended: TPAMI 42(8), 2020).
https://arxiv.org/abs/1709.01507 — authors' code: https://github.com/hujie-frank/SENet
"""

from __future__ import annotations

import torch
from torch import nn

from plugattn._checks import check_int
from plugattn._dims import check_spatial_dims, conv_nd
from plugattn.attention._common import (
    LayerFactory,
    check_feature_map,
    make_layer,
    reduced_channels,
    spatial_axes,
)
from plugattn.attention.registry import register_attention

__all__ = ["SE"]


@register_attention("se", paper="Hu et al., CVPR 2018, Squeeze-and-Excitation")
class SE(nn.Module):
    r"""Squeeze-and-Excitation: a channel gate from globally pooled features.

    With ``x`` of shape ``(B, C, H, W)`` and ``r_c`` hidden units:

    * (1) squeeze: ``z = mean_{H,W}(x)`` ``(B, C)`` (paper Eq. 2).
    * (2) excitation: ``s = σ(W_2 δ(W_1 z + b_1) + b_2)``, ``W_1: r_c×C``, ``W_2: C×r_c``, ``δ`` = ReLU
      (paper Eq. 3).
    * (3) scale: ``out = x · s`` per channel (paper Eq. 4).

    ``r_c = max(1, floor(C · rd_ratio))`` — the paper's ``C / r`` with ``r = 16`` — by
    :func:`plugattn.attention._common.reduced_channels`, so 16 channels get 1 hidden unit.

    Args:
        channels: input channels C.
        rd_ratio: reduction ratio ``1/r`` of the hidden width (default 1/16), in (0, 1].
        rd_channels: hidden width ``r_c`` directly, overriding ``rd_ratio`` (default ``None``).
        act_layer: class or zero-argument factory of the hidden activation (default ``nn.ReLU``).
        gate_layer: class or zero-argument factory of the gate (default ``nn.Sigmoid``).
        spatial_dims: spatial axes of the input: 1 ``(B, C, L)``, 2 (default) ``(B, C, H, W)``, 3
            ``(B, C, D, H, W)``.
        device, dtype: factory keywords, as torch layers take them.

    In 1-D and 3-D: the squeeze (1) averages over every spatial axis (``L``, or ``D, H, W``), ``fc1`` and
    ``fc2`` are 1×1 convs of that dimension (weights ``(r_c, C, 1)`` or ``(r_c, C, 1, 1, 1)``, the same
    numbers), and the gate is ``(B, C, 1)`` or ``(B, C, 1, 1, 1)``. Same parameters and state-dict keys
    in every dimension; on a map with a length-1 axis it equals the module of one dimension less.

    Parameters: ``2·C·r_c + r_c + C``. Submodules ``fc1``, ``act``, ``fc2``, ``gate``, as timm's
    ``SEModule`` names them, so its weights load one to one (``gate`` outputs ``s`` as ``(B, C, 1, 1)``).

    Differences from the paper:
        * The two fully connected layers are 1×1 convolutions on the ``(B, C, 1, 1)`` descriptor: the
          same function and parameters (an FC weight ``(r_c, C)`` is the conv weight ``(r_c, C, 1, 1)``),
          and no flatten/reshape, as in timm.
        * The paper's ``C / r`` is floored (at least 1); it does not say how to round. timm instead
          rounds to a multiple of 8, which makes a 16× reduction 2× at CIFAR widths.
    """

    def __init__(
        self,
        channels: int,
        *,
        rd_ratio: float = 1 / 16,
        rd_channels: int | None = None,
        act_layer: LayerFactory = nn.ReLU,
        gate_layer: LayerFactory = nn.Sigmoid,
        spatial_dims: int = 2,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        channels = check_int("channels", channels, minimum=1)
        hidden = reduced_channels(channels, rd_ratio, rd_channels)
        self.spatial_dims = check_spatial_dims(spatial_dims, "SE")
        factory = {"device": device, "dtype": dtype}
        conv = conv_nd(spatial_dims)
        self.channels = channels
        self.rd_channels = hidden
        self.fc1 = conv(channels, hidden, 1, bias=True, **factory)
        self.act = make_layer("act_layer", act_layer)
        self.fc2 = conv(hidden, channels, 1, bias=True, **factory)
        self.gate = make_layer("gate_layer", gate_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_feature_map(self, x)
        z = x.mean(dim=spatial_axes(x), keepdim=True)  # (B, C, 1, 1) in 2-D, (B, C) + (1,) * d
        s = self.gate(self.fc2(self.act(self.fc1(z))))  # (B, C) + (1,) * d
        return x * s

    def extra_repr(self) -> str:
        return f"channels={self.channels}, rd_channels={self.rd_channels}"
