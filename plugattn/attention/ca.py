"""CA — Coordinate Attention.

Q. Hou, D. Zhou, J. Feng, "Coordinate Attention for Efficient Mobile Network Design", CVPR 2021.
https://arxiv.org/abs/2103.02907 — authors' code: https://github.com/houqb/CoordAttention
"""

from __future__ import annotations

import torch
from torch import nn

from plugattn._checks import check_int
from plugattn._dims import batch_norm_nd, check_spatial_dims, conv_nd
from plugattn.attention._common import (
    LayerFactory,
    check_feature_map,
    make_layer,
    reduced_channels,
    spatial_axes,
)
from plugattn.attention.registry import register_attention

__all__ = ["CoordAtt"]


@register_attention("ca", paper="Hou et al., CVPR 2021, Coordinate Attention")
class CoordAtt(nn.Module):
    r"""Coordinate Attention: channel attention factorised into an H-direction and a W-direction map.

    With ``x`` of shape ``(B, C, H, W)`` and ``m`` hidden channels:

    * (1) ``z^h = mean_W(x)`` ``(B, C, H, 1)``, ``z^w = mean_H(x)`` ``(B, C, 1, W)`` (paper Eqs. 4-5).
    * (2) ``f = δ(BN(F_1([z^h, z^w])))`` ``(B, m, H+W, 1)``: the two concatenated along the spatial
      axis, ``F_1`` a 1×1 conv C→m with bias, ``δ`` = h-swish (paper Eq. 6).
    * (3) ``f`` split back into ``f^h`` ``(B, m, H, 1)`` and ``f^w`` ``(B, m, 1, W)``;
      ``g^h = σ(F_h(f^h))``, ``g^w = σ(F_w(f^w))``, ``F_h``, ``F_w`` 1×1 convs m→C with bias
      (paper Eqs. 7-8).
    * (4) ``out = x · g^h · g^w`` (paper Eq. 9), broadcast over W and H. No residual of its own.

    ``m = max(min_channels, floor(C · rd_ratio))`` = ``max(8, C // 32)`` by default, as the authors'
    code, by :func:`plugattn.attention._common.reduced_channels`.

    Args:
        channels: input channels C (the output has the same; the authors' separate ``inp``/``oup``
            arguments only ever take equal values in a plug-in module).
        rd_ratio: reduction ratio ``1/r`` (default 1/32), in (0, 1].
        rd_channels: hidden width ``m`` directly, overriding ``rd_ratio`` and ``min_channels``.
        min_channels: the least hidden width (default 8).
        act_layer: class or zero-argument factory of ``δ`` (default ``nn.Hardswish``, the authors'
            ``h_swish``: ``x · ReLU6(x + 3) / 6``).
        gate_layer: class or zero-argument factory of the gate (default ``nn.Sigmoid``).
        spatial_dims: spatial axes of the input: 1 ``(B, C, L)``, 2 (default) ``(B, C, H, W)``, 3
            ``(B, C, D, H, W)``.
        device, dtype: factory keywords, as torch layers take them.

    In 1-D and 3-D: one directional branch per axis of the map, its descriptor the mean over the other
    axes ``(B, C, S_i)``; the descriptors are concatenated along one sequence for the shared ``conv1``,
    ``bn1`` and ``δ`` (1×1 conv and BatchNorm of that dimension, the sequence on the first spatial
    axis, the others of length 1), split, one gate per axis, and ``out = x · Π_i g^i``. ``conv_w``
    transforms the last axis (W, or a sequence's L), ``conv_h`` every axis before it: a volume's D and
    H share it, so the keys and the parameter count stay those of 2-D and 2-D weights load after a
    reshape of the kernels. A sequence is taken as a ``(1, L)`` map: its ``conv_h`` branch pools over
    L (a per-channel gate from the global mean, ``(B, C, 1)``), its ``conv_w`` branch pools nothing
    (``(B, C, L)``). (With one branch only, 1-D CA would pool nothing at all — a pointwise gate without
    context — and leave ``conv_h`` unused.) So the 1-D module equals the 2-D one on ``(B, C, 1, L)``;
    the 3-D module on a depth-1 volume does not equal the 2-D one: its D branch, pooled over H and W,
    is a per-channel gate the 2-D module lacks.

    Parameters: ``C·m + m`` (``conv1``) ``+ 2·m`` (``bn1``) ``+ 2·(m·C + C)`` (``conv_h``, ``conv_w``);
    state-dict keys equal the authors' (``conv1``, ``bn1``, ``conv_h``, ``conv_w``), so their weights
    load. Gate: one submodule ``gate`` called once per branch, in axis order — ``g^h`` ``(B, C, H, 1)``
    first, then ``g^w`` ``(B, C, 1, W)`` (3-D: ``(B, C, D, 1, 1)``, ``(B, C, 1, H, 1)``, ``(B, C, 1, 1, W)``;
    1-D: ``(B, C, 1)``, ``(B, C, L)``).

    Differences from the paper:
        * The directional pooling is ``mean`` over one axis instead of the authors'
          ``AdaptiveAvgPool2d((None, 1))``/``((1, None))``: the same values, and it exports to ONNX.
        * BatchNorm and h-swish as in the authors' code (the paper writes ``δ`` for "a non-linear
          activation function" and mentions BN only in its figure).
        * 1-D and 3-D forms (the paper has images only), as above: D and H share ``conv_h``, and a
          sequence keeps CA's two branches as a ``(1, L)`` map.
    """

    def __init__(
        self,
        channels: int,
        *,
        rd_ratio: float = 1 / 32,
        rd_channels: int | None = None,
        min_channels: int = 8,
        act_layer: LayerFactory = nn.Hardswish,
        gate_layer: LayerFactory = nn.Sigmoid,
        spatial_dims: int = 2,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        channels = check_int("channels", channels, minimum=1)
        check_int("min_channels", min_channels, minimum=1)
        hidden = reduced_channels(channels, rd_ratio, rd_channels, min_channels=min_channels)
        self.spatial_dims = check_spatial_dims(spatial_dims, "CoordAtt")
        factory = {"device": device, "dtype": dtype}
        conv = conv_nd(spatial_dims)
        self.channels = channels
        self.rd_channels = hidden
        self.conv1 = conv(channels, hidden, 1, bias=True, **factory)
        self.bn1 = batch_norm_nd(spatial_dims)(hidden, **factory)
        self.act = make_layer("act_layer", act_layer)
        self.conv_h = conv(hidden, channels, 1, bias=True, **factory)
        self.conv_w = conv(hidden, channels, 1, bias=True, **factory)
        self.gate = make_layer("gate_layer", gate_layer)

    def _descriptors(self, x: torch.Tensor) -> list[torch.Tensor]:
        """One pooled descriptor per branch, its positions on axis 2: ``(B, C, S_i, 1, ...)``."""
        if self.spatial_dims == 1:
            return [x.mean(dim=2, keepdim=True), x]  # (B, C, 1), (B, C, L): a (1, L) map's branches
        axes = spatial_axes(x)
        out = []
        for axis in axes:
            z = x.mean(dim=tuple(a for a in axes if a != axis), keepdim=True)  # S_i on its own axis
            out.append(z if axis == 2 else z.transpose(2, axis))  # 2-D: (B, C, H, 1), (B, C, W, 1)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_feature_map(self, x)
        z = self._descriptors(x)
        f = self.act(self.bn1(self.conv1(torch.cat(z, dim=2))))  # (B, m, H + W, 1) in 2-D
        parts = f.split([t.shape[2] for t in z], dim=2)  # 2-D: (B, m, H, 1), (B, m, W, 1)
        gates = []
        for i, part in enumerate(parts):
            if self.spatial_dims > 1 and i > 0:
                part = part.transpose(2, 2 + i)  # back on its own axis: (B, m, 1, W) in 2-D
            conv = self.conv_w if i == len(parts) - 1 else self.conv_h
            gates.append(self.gate(conv(part)))  # 2-D: g^h (B, C, H, 1), then g^w (B, C, 1, W)
        out = x
        for g in reversed(gates):
            out = out * g  # x · g^w · g^h, the authors' order of products
        return out

    def extra_repr(self) -> str:
        return f"channels={self.channels}, rd_channels={self.rd_channels}"
