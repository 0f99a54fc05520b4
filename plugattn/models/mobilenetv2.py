"""MobileNetV2, built from its ``[t, c, n, s]`` table.

M. Sandler, A. Howard, M. Zhu, A. Zhmoginov, L.-C. Chen, "MobileNetV2: Inverted Residuals and Linear
Bottlenecks", CVPR 2018. https://arxiv.org/abs/1801.04381 — the table, widths rounding and
initialisation follow torchvision's ``mobilenetv2.py`` (3,504,872 parameters at width 1.0, 1000
classes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from plugattn._checks import check_choice, check_float, check_int
from plugattn.attention.registry import AttentionSpec
from plugattn.models.blocks import ResidualBlock, conv_no_bias, init_weights
from plugattn.models.features import FeatureInfo
from plugattn.models.placement import POSITIONS, check_stages, naming_the_block
from plugattn.models.registry import register_model

__all__ = ["MOBILENET_V2_SETTINGS", "InvertedResidual", "MobileNetV2", "make_divisible"]

# t: expansion ratio, c: output channels, n: blocks, s: stride of the first block (paper Table 2).
MOBILENET_V2_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never more than 10% down (TF's rule)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


class InvertedResidual(ResidualBlock):
    """MobileNetV2's block: 1×1 expansion → 3×3 depthwise → 1×1 linear projection, BN after each.

    The expansion (``conv_pw``/``bn1``/``act1``) is absent when ``expand_ratio`` is 1; ReLU6 follows
    the first two BNs; the input is added when ``stride == 1`` and ``in_chs == out_chs``.
    ``"end"`` is after the projection BN, before the add (also in blocks without one);
    ``"before_last_conv"`` (SCSA) is after the depthwise conv/BN/ReLU6, before the projection.

    Args:
        in_chs, out_chs: input and output channels.
        stride: stride of the depthwise conv.
        expand_ratio: ``t`` of the paper's table; hidden width ``round(in_chs · t)``.
        attention, position, attn_kwargs, device, dtype: as :class:`BasicBlock`.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        expand_ratio: float = 6,
        *,
        attention: AttentionSpec = None,
        position: str | None = None,
        attn_kwargs: dict[str, Any] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_choice("stride", stride, (1, 2))
        check_float("expand_ratio", expand_ratio, low=1)
        f = {"device": device, "dtype": dtype}
        hidden = int(round(in_chs * expand_ratio))
        self.stride = stride
        self.use_res_connect = stride == 1 and in_chs == out_chs
        self.expands = expand_ratio != 1
        if self.expands:
            self.conv_pw = conv_no_bias(in_chs, hidden, 1, **f)
            self.bn1 = nn.BatchNorm2d(hidden, **f)
            self.act1 = nn.ReLU6(inplace=True)
        self.conv_dw = conv_no_bias(hidden, hidden, 3, stride, groups=hidden, **f)
        self.bn2 = nn.BatchNorm2d(hidden, **f)
        self.act2 = nn.ReLU6(inplace=True)
        self.conv_pwl = conv_no_bias(hidden, out_chs, 1, **f)
        self.bn3 = nn.BatchNorm2d(out_chs, **f)
        self._group_channels = (hidden, hidden, out_chs) if self.expands else (hidden, out_chs)
        self.set_attention(attention, position, attn_kwargs, **f)

    def zero_init_last(self) -> None:
        # Only a branch that is added to a shortcut may start at zero.
        if self.use_res_connect:
            nn.init.zeros_(self.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, k = x, int(self.expands)  # k: the index of the depthwise group
        if self.expands:
            y = self.attend(self.act1(self.bn1(self.conv_pw(y))), after=0)
        y = self.attend(self.act2(self.bn2(self.conv_dw(y))), after=k)
        y = self.attend(self.bn3(self.conv_pwl(y)), after=k + 1)
        return y + x if self.use_res_connect else y


def _stage_specs(
    settings: Sequence[Sequence[int]], width_mult: float, round_nearest: int
) -> list[list[tuple[int, int, float]]]:
    """The table's blocks as ``(out_chs, stride, t)``, grouped into stages of one resolution: a
    stride-2 block opens a new stage."""
    if isinstance(settings, (str, bytes)) or not settings or any(len(row) != 4 for row in settings):
        raise ValueError(f"settings must be a non-empty sequence of [t, c, n, s] rows, got {settings!r}")
    for i, (t, c, n, s) in enumerate(settings):
        check_float(f"settings[{i}] t", t, low=1)
        check_int(f"settings[{i}] c", c, minimum=1)
        check_int(f"settings[{i}] n", n, minimum=1)
        check_choice(f"settings[{i}] s", s, (1, 2))
    specs: list[list[tuple[int, int, float]]] = []
    for t, c, n, s in settings:
        out_chs = make_divisible(c * width_mult, round_nearest)
        for j in range(n):
            stride = s if j == 0 else 1
            if not specs or (stride == 2 and specs[-1]):
                specs.append([])
            specs[-1].append((out_chs, stride, t))
    return specs


class MobileNetV2(nn.Module):
    """MobileNetV2 with attention in its inverted-residual blocks.

    Stages are the runs of blocks at one resolution: with the default table, ``stages.0`` … ``stages.4``
    at strides 2, 4, 8, 16, 32 with 16, 24, 32, 96, 320 output channels (the table's rows 4-5 and 6-7
    share a stage). ``stages`` and ``features_only`` count these.

    Args:
        settings: the ``[t, c, n, s]`` rows.
        width_mult: channel multiplier (default 1.0), widths rounded by :func:`make_divisible`.
        round_nearest: the rounding divisor (default 8).
        stem_width, head_width: channels of the stem conv (32) and of the last 1×1 conv (1280), before
            ``width_mult`` (the head is never made narrower).
        dropout: dropout before the classifier (default 0.2).
        num_classes, in_chans, attention, position, stages, attn_kwargs, zero_init_residual,
        features_only, device, dtype: as :class:`plugattn.models.ResNet`. ``"end"`` is after the
            projection BN, before the add (also in blocks without residual); SCSA's default
            ``"before_last_conv"`` is after the depthwise conv/BN/ReLU6.

    Initialisation (torchvision's): convs Kaiming-normal fan_out, BN 1/0, classifier ``N(0, 0.01²)``.
    Parameter names follow timm (``conv_stem``, ``bn1``, ``conv_head``, ``bn2``, ``classifier``; blocks
    ``conv_pw``/``conv_dw``/``conv_pwl``), not torchvision's ``features.N`` indices.
    """

    def __init__(
        self,
        *,
        settings: Sequence[Sequence[int]] = MOBILENET_V2_SETTINGS,
        width_mult: float = 1.0,
        round_nearest: int = 8,
        stem_width: int = 32,
        head_width: int = 1280,
        dropout: float = 0.2,
        num_classes: int = 1000,
        in_chans: int = 3,
        attention: AttentionSpec = None,
        position: str | None = None,
        stages: Sequence[int] | None = None,
        attn_kwargs: dict[str, Any] | None = None,
        zero_init_residual: bool = False,
        features_only: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_float("width_mult", width_mult, low=0, low_open=True)
        check_int("round_nearest", round_nearest, minimum=1)
        check_float("dropout", dropout, low=0, high=1, high_open=True)
        check_int("num_classes", num_classes, minimum=1)
        check_int("in_chans", in_chans, minimum=1)
        if position is not None:
            check_choice("position", position, POSITIONS)
        specs = _stage_specs(settings, width_mult, round_nearest)
        with_attention = check_stages(stages, len(specs))
        f = {"device": device, "dtype": dtype}
        self.features_only = features_only

        in_chs = make_divisible(stem_width * width_mult, round_nearest)
        self.conv_stem = nn.Conv2d(in_chans, in_chs, 3, 2, 1, bias=False, **f)
        self.bn1 = nn.BatchNorm2d(in_chs, **f)
        self.act1 = nn.ReLU6(inplace=True)

        reduction = 2
        self.feature_info = FeatureInfo()
        self.stages = nn.Sequential()
        for i, stage in enumerate(specs):
            attn = attention if i in with_attention else None
            blocks = []
            for out_chs, stride, t in stage:
                reduction *= stride
                with naming_the_block(f"stages.{i}.{len(blocks)}"):
                    blocks.append(InvertedResidual(
                        in_chs, out_chs, stride, t, attention=attn,
                        position=position if attn is not None else None, attn_kwargs=attn_kwargs, **f,
                    ))  # fmt: skip
                in_chs = out_chs
            self.stages.append(nn.Sequential(*blocks))
            self.feature_info.append({"num_chs": in_chs, "reduction": reduction, "module": f"stages.{i}"})

        if not features_only:
            self.num_features = make_divisible(head_width * max(1.0, width_mult), round_nearest)
            self.conv_head = nn.Conv2d(in_chs, self.num_features, 1, bias=False, **f)
            self.bn2 = nn.BatchNorm2d(self.num_features, **f)
            self.act2 = nn.ReLU6(inplace=True)
            self.global_pool = nn.AdaptiveAvgPool2d(1)
            self.dropout = nn.Dropout(dropout)
            self.classifier = nn.Linear(self.num_features, num_classes, **f)
        else:
            self.num_features = in_chs
        init_weights(self, linear_std=0.01, zero_init_residual=zero_init_residual)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of every stage, ``(B, num_chs_i, H / reduction_i, W / reduction_i)``."""
        x = self.act1(self.bn1(self.conv_stem(x)))
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        features = self.forward_features(x)
        if self.features_only:
            return features
        x = self.act2(self.bn2(self.conv_head(features[-1])))
        x = torch.flatten(self.global_pool(x), 1)  # (B, num_features)
        return self.classifier(self.dropout(x))


register_model(
    "mobilenet_v2",
    MobileNetV2,
    {"settings": MOBILENET_V2_SETTINGS, "width_mult": 1.0},
    num_classes=1000,
    paper="Sandler et al., CVPR 2018, https://arxiv.org/abs/1801.04381",
    family="mobilenet",
)
