"""The ResNet family as one builder and tables of variants.

* CIFAR ResNets — He et al. 2016, "Deep Residual Learning for Image Recognition" §4.2,
  https://arxiv.org/abs/1512.03385: 3×3 stem of 16, three stages of ``n`` BasicBlocks at widths
  16/32/64 (depth ``6n + 2``), option-A shortcuts by default (``shortcut="B"``: 1×1 conv + BN).
* Wide ResNets — Zagoruyko & Komodakis 2016, "Wide Residual Networks", https://arxiv.org/abs/1605.07146:
  WRN-d-k, ``(d - 4) / 6`` pre-activation blocks per stage at widths 16k/32k/64k.
* ResNeXt-29 for CIFAR — Xie et al. 2017, "Aggregated Residual Transformations for Deep Neural
  Networks", https://arxiv.org/abs/1611.05431: 3×3 stem of 64, three stages of 3 Bottlenecks with
  cardinality 8 and width 64 per group (8×64d, 34.4M parameters as the paper's Table 7).
* ImageNet-layout ResNets and ResNeXt — torchvision's layout (7×7 stride-2 stem + max-pool, four
  stages, stride on the Bottleneck's 3×3 conv) and state-dict keys; ``stem="small"`` swaps the stem for
  a 3×3 stride-1 conv without max-pool for CIFAR/STL-sized inputs. ``wide_resnet18_2`` is ResNet-18
  with every stage twice as wide (128/256/512/1024; the stem stays 64, as WRNs keep theirs).
* ``resnet10_3d`` — a 3-D ResNet-10 as Hara et al. 2018, "Can Spatiotemporal 3D CNNs Retrace the
  History of 2D CNNs and ImageNet?", https://arxiv.org/abs/1711.09577 (their code's defaults): 7×7×7
  stem of 64 with stride (1, 2, 2), 3×3×3 stride-2 max-pool, one 3×3×3 BasicBlock per stage at
  64/128/256/512, 1×1×1 conv + BN shortcuts ("B"), global average pool, 400 classes (Kinetics).
  Input ``(B, C, D, H, W)``; ``widths=(8, 16, 32, 64), stem_width=8`` builds a narrow one.
* ``resnet18_1d`` — ResNet-18 with every conv, norm and pool 1-D, for signals ``(B, C, L)``: kernel-7
  stride-2 stem + stride-2 max-pool, two kernel-3 BasicBlocks per stage at 64/128/256/512.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from plugattn._checks import check_choice, check_float, check_int
from plugattn._dims import adaptive_avg_pool_nd, batch_norm_nd, check_spatial_dims, conv_nd, max_pool_nd
from plugattn.attention.registry import AttentionSpec
from plugattn.models.blocks import SHORTCUTS, BasicBlock, Bottleneck, PreActBasicBlock, init_weights
from plugattn.models.features import FeatureInfo
from plugattn.models.placement import POSITIONS, check_stages, naming_the_block
from plugattn.models.registry import register_model

__all__ = ["BLOCKS", "STEMS", "ResNet"]

BLOCKS: dict[str, type[BasicBlock | Bottleneck | PreActBasicBlock]] = {
    "basic": BasicBlock,
    "bottleneck": Bottleneck,
    "preact": PreActBasicBlock,
}
# "imagenet": 7×7 stride-2 conv + BN + ReLU + 3×3 stride-2 max-pool (reduction 4);
# "small":    3×3 stride-1 conv + BN + ReLU, no pool (reduction 1) — the CIFAR stem;
# "video":    7×7×7 conv with stride (1, 2, 2) — depth/time kept, H and W halved — + BN + ReLU + 3×3×3
#             stride-2 max-pool (reduction 2 in depth, 4 in H and W): Hara et al. 2018's 3-D stem.
STEMS = ("imagenet", "small", "video")


def _check_layout(
    block: str, layers: Sequence[int], widths: Sequence[int], stem: str, stem_width: int, shortcut: str
) -> None:
    check_choice("block", block, tuple(BLOCKS))
    if isinstance(layers, (str, bytes)) or not layers or len(layers) != len(widths):
        raise ValueError(
            f"layers and widths must be non-empty sequences of equal length, got layers={layers!r}, "
            f"widths={widths!r}"
        )
    for i, (n, w) in enumerate(zip(layers, widths, strict=True)):
        check_int(f"layers[{i}]", n, minimum=1)
        check_int(f"widths[{i}]", w, minimum=1)
    check_choice("stem", stem, STEMS)
    check_int("stem_width", stem_width, minimum=1)
    check_choice("shortcut", shortcut, SHORTCUTS)


def _stem(
    stem: str, in_chans: int, stem_width: int, preact: bool, spatial_dims: int, **f: Any
) -> tuple[nn.Module, nn.Module, nn.Module, nn.Module]:
    """conv1, bn1, act1, maxpool of ``stem``. Pre-activation nets have no norm here: each block
    normalises its own input."""
    if stem == "video" and spatial_dims != 3:
        raise ValueError(f"stem 'video' is a 3-D stem (spatial_dims=3), got spatial_dims={spatial_dims}")
    k, s = (7, 2) if stem != "small" else (3, 1)
    stride = (1, 2, 2) if stem == "video" else s
    conv = conv_nd(spatial_dims)(in_chans, stem_width, k, stride, k // 2, bias=False, **f)
    bn = nn.Identity() if preact else batch_norm_nd(spatial_dims)(stem_width, **f)
    act = nn.Identity() if preact else nn.ReLU(inplace=True)
    pool = max_pool_nd(spatial_dims)(3, 2, 1) if stem != "small" else nn.Identity()
    return conv, bn, act, pool


class ResNet(nn.Module):
    """A ResNet of any block type, depth and width, with attention in its blocks.

    Args:
        block: ``"basic"``, ``"bottleneck"`` or ``"preact"`` (Wide ResNet's pre-activation block).
        layers: blocks per stage.
        widths: ``planes`` per stage (a Bottleneck outputs ``4 · planes``).
        stem: ``"imagenet"``, ``"small"`` or ``"video"`` (3-D only; see :data:`STEMS`).
        stem_width: channels of the stem conv.
        shortcut: ``"A"`` (parameter-free) or ``"B"`` (1×1 conv + BN; conv only in pre-activation
            blocks) where a block changes shape.
        groups, base_width: ResNeXt cardinality and width per group (Bottleneck only).
        drop_rate: dropout between the two convs of pre-activation blocks (WRN), default 0.
        num_classes: classifier outputs.
        in_chans: input channels.
        attention: attention module for the blocks (name, class, factory, or ``None``).
        position: its place in each block; ``None`` = the module's paper position.
        stages: 0-based stage indices that get attention; ``None`` = all.
        attn_kwargs: keyword options of the attention module.
        zero_init_residual: zero the last BN of each residual branch (see :func:`init_weights`).
        features_only: no classifier; ``forward`` returns the list of stage outputs, described by
            ``feature_info`` (``num_chs``, ``reduction`` = stride w.r.t. the input — in H and W for the
            ``"video"`` stem, whose depth axis is reduced half as much — ``module``).
        spatial_dims: 1 (signals ``(B, C, L)``), 2 (images, default) or 3 (volumes or clips
            ``(B, C, D, H, W)``): every conv, norm, pool and attention module takes that many axes. A
            2-D ResNet is unchanged by the option (same layers, keys and parameters).
        device, dtype: factory keywords.

    Stages are ``layer1``…``layerN``; a stage's first block carries the stride (1 for ``layer1``, 2
    after). Pre-activation models end with ``head_norm``/``head_act`` (BN + ReLU) before pooling, also
    applied to the last feature when ``features_only``.
    """

    def __init__(
        self,
        *,
        block: str,
        layers: Sequence[int],
        widths: Sequence[int],
        stem: str = "imagenet",
        stem_width: int = 64,
        shortcut: str = "B",
        groups: int = 1,
        base_width: int = 64,
        drop_rate: float = 0.0,
        num_classes: int = 1000,
        in_chans: int = 3,
        attention: AttentionSpec = None,
        position: str | None = None,
        stages: Sequence[int] | None = None,
        attn_kwargs: dict[str, Any] | None = None,
        zero_init_residual: bool = False,
        features_only: bool = False,
        spatial_dims: int = 2,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _check_layout(block, layers, widths, stem, stem_width, shortcut)
        self.spatial_dims = check_spatial_dims(spatial_dims)  # the input's axes after its channels
        check_int("num_classes", num_classes, minimum=1)
        check_int("in_chans", in_chans, minimum=1)
        if position is not None:
            check_choice("position", position, POSITIONS)
        with_attention = check_stages(stages, len(layers))
        block_cls = BLOCKS[block]
        preact = block_cls is PreActBasicBlock
        block_kwargs: dict[str, Any] = {"shortcut": shortcut, "groups": groups, "base_width": base_width,
                                        "spatial_dims": spatial_dims}  # fmt: skip
        if preact:
            block_kwargs["drop_rate"] = drop_rate
        elif check_float("drop_rate", drop_rate) != 0:
            raise ValueError(f"drop_rate applies to pre-activation blocks only; {block!r} got {drop_rate}")
        f = {"device": device, "dtype": dtype}
        self.features_only = features_only

        self.conv1, self.bn1, self.act1, self.maxpool = _stem(
            stem, in_chans, stem_width, preact, spatial_dims, **f
        )

        # Stages: the first block of each carries the stride (1 for layer1, 2 after).
        in_chs, reduction = stem_width, 1 if stem == "small" else 4
        self.feature_info = FeatureInfo()
        self._stage_names: tuple[str, ...] = tuple(f"layer{i + 1}" for i in range(len(layers)))
        widths_note = f"the stage widths here are {list(widths)}"
        for i, (n, planes) in enumerate(zip(layers, widths, strict=True)):
            stride = 1 if i == 0 else 2
            reduction *= stride
            attn = attention if i in with_attention else None
            blocks = []
            for j in range(n):
                with naming_the_block(f"{self._stage_names[i]}.{j}", widths_note):
                    blocks.append(block_cls(
                        in_chs, planes, stride if j == 0 else 1, attention=attn,
                        position=position if attn is not None else None, attn_kwargs=attn_kwargs,
                        **block_kwargs, **f,
                    ))  # fmt: skip
                in_chs = planes * block_cls.expansion
            self.add_module(self._stage_names[i], nn.Sequential(*blocks))
            self.feature_info.append(
                {"num_chs": in_chs, "reduction": reduction, "module": self._stage_names[i]}
            )
        self.num_features = in_chs

        # Head: pre-activation nets normalise the last stage's output before pooling.
        self.head_norm = batch_norm_nd(spatial_dims)(in_chs, **f) if preact else nn.Identity()
        self.head_act = nn.ReLU(inplace=True) if preact else nn.Identity()
        if not features_only:
            self.global_pool = adaptive_avg_pool_nd(spatial_dims)(1)
            self.fc = nn.Linear(in_chs, num_classes, **f)
        init_weights(self, zero_init_residual=zero_init_residual)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of every stage, ``(B, num_chs_i, H / reduction_i, W / reduction_i)`` in 2-D."""
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        features = []
        for name in self._stage_names:
            x = getattr(self, name)(x)
            features.append(x)
        features[-1] = self.head_act(self.head_norm(features[-1]))
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        features = self.forward_features(x)
        if self.features_only:
            return features
        return self.fc(torch.flatten(self.global_pool(features[-1]), 1))  # (B, num_classes)


# --- the variants: (name, configuration, default classes, paper) -------------------------------------
_HE = "He et al., CVPR 2016, https://arxiv.org/abs/1512.03385"
_WRN = "Zagoruyko & Komodakis, BMVC 2016, https://arxiv.org/abs/1605.07146"
_XIE = "Xie et al., CVPR 2017, https://arxiv.org/abs/1611.05431"

# CIFAR ResNet-(6n+2): n BasicBlocks per stage.
_CIFAR_RESNET_N = {"resnet20": 3, "resnet32": 5, "resnet44": 7, "resnet56": 9, "resnet110": 18}
# WRN-d-k: (d - 4) / 6 pre-activation blocks per stage, widths 16k/32k/64k.
_WIDE_RESNETS = {"wrn16_8": (16, 8), "wrn28_10": (28, 10)}
# ImageNet layout: block, blocks per stage, stage widths, groups, width per group.
_IMAGENET_RESNETS: dict[str, tuple[str, tuple[int, ...], tuple[int, ...], int, int]] = {
    "resnet18": ("basic", (2, 2, 2, 2), (64, 128, 256, 512), 1, 64),
    "resnet34": ("basic", (3, 4, 6, 3), (64, 128, 256, 512), 1, 64),
    "resnet50": ("bottleneck", (3, 4, 6, 3), (64, 128, 256, 512), 1, 64),
    "resnet101": ("bottleneck", (3, 4, 23, 3), (64, 128, 256, 512), 1, 64),
    "resnext50_32x4d": ("bottleneck", (3, 4, 6, 3), (64, 128, 256, 512), 32, 4),
    "wide_resnet18_2": ("basic", (2, 2, 2, 2), (128, 256, 512, 1024), 1, 64),
}

for _name, _n in _CIFAR_RESNET_N.items():
    register_model(
        _name,
        ResNet,
        {"block": "basic", "layers": (_n,) * 3, "widths": (16, 32, 64), "stem": "small", "stem_width": 16,
         "shortcut": "A"},
        num_classes=10,
        paper=_HE,
        family="cifar-resnet",
    )  # fmt: skip

for _name, (_depth, _k) in _WIDE_RESNETS.items():
    register_model(
        _name,
        ResNet,
        {"block": "preact", "layers": ((_depth - 4) // 6,) * 3, "widths": (16 * _k, 32 * _k, 64 * _k),
         "stem": "small", "stem_width": 16, "shortcut": "B"},
        num_classes=10,
        paper=_WRN,
        family="wide-resnet",
    )  # fmt: skip

register_model(
    "resnext29_8x64d",
    ResNet,
    {"block": "bottleneck", "layers": (3, 3, 3), "widths": (64, 128, 256), "stem": "small", "stem_width": 64,
     "shortcut": "B", "groups": 8, "base_width": 64},
    num_classes=10,
    paper=_XIE,
    family="cifar-resnext",
)  # fmt: skip

for _name, (_block, _layers, _widths, _groups, _base_width) in _IMAGENET_RESNETS.items():
    register_model(
        _name,
        ResNet,
        {"block": _block, "layers": _layers, "widths": _widths, "stem": "imagenet", "stem_width": 64,
         "shortcut": "B", "groups": _groups, "base_width": _base_width},
        num_classes=1000,
        paper=_XIE if _groups > 1 else _WRN if _name.startswith("wide") else _HE,
        family="resnet",
    )  # fmt: skip

# Other dimensions, the same builder: blocks, stem and pools take spatial_dims.
register_model(
    "resnet10_3d",
    ResNet,
    {"block": "basic", "layers": (1, 1, 1, 1), "widths": (64, 128, 256, 512), "stem": "video",
     "stem_width": 64, "shortcut": "B", "spatial_dims": 3},
    num_classes=400,
    paper="Hara et al., CVPR 2018, https://arxiv.org/abs/1711.09577",
    family="resnet-3d",
)  # fmt: skip

register_model(
    "resnet18_1d",
    ResNet,
    {"block": "basic", "layers": (2, 2, 2, 2), "widths": (64, 128, 256, 512), "stem": "imagenet",
     "stem_width": 64, "shortcut": "B", "spatial_dims": 1},
    num_classes=2,
    paper=_HE,
    family="resnet-1d",
)  # fmt: skip
