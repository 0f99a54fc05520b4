"""CA — Coordinate Attention.

Q. Hou, D. Zhou, J. Feng, "Coordinate Attention for Efficient Mobile Network Design", CVPR 2021.
https://arxiv.org/abs/2103.02907 — authors' code: https://github.com/houqb/CoordAttention
"""

from __future__ import annotations

import torch
from torch import nn

from plugattn._checks import check_int
from plugattn.attention._common import LayerFactory, check_feature_map, make_layer, reduced_channels
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
        device, dtype: factory keywords, as torch layers take them.

    Parameters: ``C·m + m`` (``conv1``) ``+ 2·m`` (``bn1``) ``+ 2·(m·C + C)`` (``conv_h``, ``conv_w``);
    state-dict keys equal the authors' (``conv1``, ``bn1``, ``conv_h``, ``conv_w``), so their weights
    load. Gate: one submodule ``gate`` called twice per forward — ``g^h`` ``(B, C, H, 1)`` first, then
    ``g^w`` ``(B, C, 1, W)``.

    Differences from the paper:
        * The directional pooling is ``mean`` over one axis instead of the authors'
          ``AdaptiveAvgPool2d((None, 1))``/``((1, None))``: the same values, and it exports to ONNX.
        * BatchNorm and h-swish as in the authors' code (the paper writes ``δ`` for "a non-linear
          activation function" and mentions BN only in its figure).
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
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        channels = check_int("channels", channels, minimum=1)
        check_int("min_channels", min_channels, minimum=1)
        hidden = reduced_channels(channels, rd_ratio, rd_channels, min_channels=min_channels)
        factory = {"device": device, "dtype": dtype}
        self.channels = channels
        self.rd_channels = hidden
        self.conv1 = nn.Conv2d(channels, hidden, 1, bias=True, **factory)
        self.bn1 = nn.BatchNorm2d(hidden, **factory)
        self.act = make_layer("act_layer", act_layer)
        self.conv_h = nn.Conv2d(hidden, channels, 1, bias=True, **factory)
        self.conv_w = nn.Conv2d(hidden, channels, 1, bias=True, **factory)
        self.gate = make_layer("gate_layer", gate_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_feature_map(self, x)
        h, w = x.shape[2], x.shape[3]
        z_h = x.mean(dim=3, keepdim=True)  # (B, C, H, 1)
        z_w = x.mean(dim=2, keepdim=True).transpose(2, 3)  # (B, C, W, 1)
        f = self.act(self.bn1(self.conv1(torch.cat((z_h, z_w), dim=2))))  # (B, m, H + W, 1)
        f_h, f_w = f.split((h, w), dim=2)  # (B, m, H, 1), (B, m, W, 1)
        g_h = self.gate(self.conv_h(f_h))  # (B, C, H, 1)
        g_w = self.gate(self.conv_w(f_w.transpose(2, 3)))  # (B, C, 1, W)
        return x * g_w * g_h  # the authors' order of products

    def extra_repr(self) -> str:
        return f"channels={self.channels}, rd_channels={self.rd_channels}"
