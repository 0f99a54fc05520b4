"""plugattn backbones inside torchvision's detectors: Faster R-CNN, RetinaNet and FCOS over an FPN.

:func:`detection_backbone` turns any registered backbone that can be built ``features_only`` (ResNets,
MobileNetV2, RepVGG, Swin — with any attention module at any of their positions) into what torchvision's
detectors take: a module with ``out_channels`` whose forward returns an ``OrderedDict`` of FPN maps.
:func:`detection_model` builds the detector around it with anchors sized from the backbone's strides.

torchvision is the ``detection`` extra (``pip install 'plugattn[detection]'``); it is imported when one
of these functions is called, so the rest of plugattn works without it.

SCSA's paper reports Faster R-CNN and Cascade R-CNN on COCO with the module in every bottleneck of a
ResNet-50 backbone, and no code for it; here the attention sits wherever ``create_model`` puts it for
the backbone (each module's paper place in ResNets, ``position`` to choose another), and the FPN reads
every stage's output.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from plugattn._checks import check_choice, check_int
from plugattn.models.registry import create_model

__all__ = ["DETECTORS", "DetectionBackbone", "detection_backbone", "detection_model", "require_torchvision"]

DETECTORS = ("faster_rcnn", "retinanet", "fcos")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def require_torchvision() -> Any:
    """torchvision with its detection models and ops, or ``ImportError`` saying how to install it."""
    try:
        import torchvision
        import torchvision.models.detection  # noqa: F401  (the submodules used below)
        import torchvision.ops.feature_pyramid_network  # noqa: F401
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "detection needs torchvision: pip install 'plugattn[detection]' (a torchvision built for "
            "the installed torch)"
        ) from err
    return torchvision


class DetectionBackbone(nn.Module):
    """A ``features_only`` backbone and torchvision's FPN over the levels it returns.

    ``forward(x)`` returns ``OrderedDict`` ``{"0": P_first, ..., "pool" or "p6", "p7"}`` with
    ``out_channels`` channels each; ``reductions`` lists every returned map's stride, extra levels
    included, in that order (what :func:`detection_model` sizes its anchors from).
    """

    def __init__(self, body: nn.Module, levels: Sequence[int], out_channels: int, extra: str) -> None:
        super().__init__()
        ops = require_torchvision().ops.feature_pyramid_network
        info = getattr(body, "feature_info", None)
        if info is None:
            raise ValueError(
                f"body must be a features_only plugattn model with feature_info, got {type(body)}"
            )
        self.body = body
        self.levels = list(levels)
        channels = [info.channels()[i] for i in self.levels]
        reductions = [info.reduction()[i] for i in self.levels]
        if extra == "pool":
            blocks, extra_reductions = ops.LastLevelMaxPool(), [2 * reductions[-1]]
        elif extra == "p6p7":
            blocks, extra_reductions = (
                ops.LastLevelP6P7(out_channels, out_channels),
                [
                    2 * reductions[-1],
                    4 * reductions[-1],
                ],
            )
        else:
            blocks, extra_reductions = None, []
        self.fpn = ops.FeaturePyramidNetwork(channels, out_channels, extra_blocks=blocks)
        self.out_channels = out_channels
        self.reductions = reductions + extra_reductions

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        features = self.body(x)
        return self.fpn(OrderedDict((str(k), features[i]) for k, i in enumerate(self.levels)))


def detection_backbone(
    name: str = "resnet18",
    *,
    attention: Any = None,
    position: str | None = None,
    in_chans: int = 3,
    fpn_channels: int = 256,
    levels: Sequence[int] | None = None,
    extra: str = "pool",
    **backbone_kwargs: Any,
) -> DetectionBackbone:
    """A registered backbone with attention, ``features_only``, under torchvision's FPN.

    Args:
        name: a registered model that takes ``features_only`` (``plugattn.list_models()``).
        attention, position: as in :func:`plugattn.create_model`.
        in_chans: input channels (1 for grey images).
        fpn_channels: channels of every FPN map (torchvision's detectors use 256).
        levels: indices of the backbone's returned maps that feed the FPN, finest first; ``None`` takes
            those at stride 4 and coarser (C2–C5 of a ResNet; MobileNetV2 and RepVGG also return a
            stride-2 map, left out).
        extra: maps added above the coarsest: ``"pool"`` (a stride-2 max pool, as Faster R-CNN's FPN),
            ``"p6p7"`` (two stride-2 3×3 convs, as RetinaNet and FCOS), or ``"none"``.
        **backbone_kwargs: more options for the backbone's builder.
    """
    check_choice("extra", extra, ("pool", "p6p7", "none"))
    check_int("fpn_channels", fpn_channels, minimum=1)
    body = create_model(name, attention=attention, position=position, in_chans=in_chans, features_only=True,
                        **backbone_kwargs)  # fmt: skip
    available = len(body.feature_info)
    if levels is None:  # every map at stride 4 or coarser, as torchvision's FPN backbones (C2..C5)
        levels = [i for i, r in enumerate(body.feature_info.reduction()) if r >= 4]
    levels = [check_int("levels[]", i, minimum=0) for i in levels]
    if not levels or any(i >= available for i in levels) or levels != sorted(set(levels)):
        raise ValueError(
            f"levels must be increasing indices in [0, {available}) of {name}'s feature maps, got {levels}"
        )
    return DetectionBackbone(body, levels, fpn_channels, extra)


def detection_model(
    kind: str = "faster_rcnn",
    name: str = "resnet18",
    *,
    num_classes: int,
    attention: Any = None,
    position: str | None = None,
    in_chans: int = 3,
    fpn_channels: int = 256,
    image_size: int | None = None,
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
    anchor_sizes: Sequence[int] | None = None,
    box_head_size: int = 1024,
    backbone_kwargs: dict[str, Any] | None = None,
    **detector_kwargs: Any,
) -> nn.Module:
    """torchvision's ``kind`` detector over :func:`detection_backbone` (``name`` + ``attention``).

    Args:
        kind: ``"faster_rcnn"``, ``"retinanet"`` or ``"fcos"``.
        name, attention, position, in_chans, fpn_channels: the backbone (:func:`detection_backbone`).
        num_classes: classes including the background (torchvision's convention: label 0).
        image_size: the side torchvision's transform resizes images to (``min_size = max_size``);
            ``None`` keeps torchvision's 800/1333, meant for COCO-sized photographs.
        image_mean, image_std: per-channel normalisation in [0, 1] units; ImageNet's when ``in_chans``
            is 3 and they are not given, required otherwise.
        anchor_sizes: one anchor side per FPN level; ``None`` gives twice each level's stride (32–512 in
            torchvision's COCO models, whose images are ~6× larger than the canvases of this project).
        box_head_size: width of Faster R-CNN's two-layer box head (torchvision's 1024).
        backbone_kwargs: more options for the backbone's builder.
        **detector_kwargs: anything else torchvision's detector takes (``box_batch_size_per_image``,
            ``rpn_post_nms_top_n_train``, ``score_thresh``, ...).
    """
    check_choice("kind", kind, DETECTORS)
    num_classes = check_int("num_classes", num_classes, minimum=2)
    if image_mean is None and image_std is None and in_chans == 3:
        image_mean, image_std = IMAGENET_MEAN, IMAGENET_STD
    for arg, value in (("image_mean", image_mean), ("image_std", image_std)):
        if value is None or len(value) != in_chans:
            raise ValueError(f"{arg} needs one value per input channel ({in_chans}), got {value!r}")
    if image_size is not None:
        side = check_int("image_size", image_size, minimum=32)
        detector_kwargs = {"min_size": side, "max_size": side, **detector_kwargs}
    if kind == "fcos" and fpn_channels % 32:  # its head's GroupNorm has 32 groups
        raise ValueError(
            f"fpn_channels must be a multiple of 32 for FCOS (GroupNorm(32) head), got {fpn_channels}"
        )
    tv = require_torchvision()
    det = tv.models.detection
    backbone = detection_backbone(
        name, attention=attention, position=position, in_chans=in_chans, fpn_channels=fpn_channels,
        extra="pool" if kind == "faster_rcnn" else "p6p7", **(backbone_kwargs or {}),
    )  # fmt: skip
    sizes = [2 * r for r in backbone.reductions] if anchor_sizes is None else list(anchor_sizes)
    if len(sizes) != len(backbone.reductions) or not all(isinstance(s, int) and s > 0 for s in sizes):
        raise ValueError(
            f"anchor_sizes needs one positive int per FPN level ({len(backbone.reductions)}), "
            f"got {anchor_sizes!r}"
        )
    common = {"image_mean": list(image_mean), "image_std": list(image_std), **detector_kwargs}
    if kind == "fcos":  # one anchor per place: FCOS reads only its centre and stride
        anchors = det.anchor_utils.AnchorGenerator(tuple((s,) for s in sizes), ((1.0,),) * len(sizes))
        return det.FCOS(backbone, num_classes, anchor_generator=anchors, **common)
    if kind == "retinanet":  # three scales per octave and three ratios, as the paper
        scales = tuple(tuple(int(s * 2 ** (k / 3)) for k in range(3)) for s in sizes)
        anchors = det.anchor_utils.AnchorGenerator(scales, ((0.5, 1.0, 2.0),) * len(sizes))
        return det.RetinaNet(backbone, num_classes, anchor_generator=anchors, **common)
    check_int("box_head_size", box_head_size, minimum=1)
    anchors = det.anchor_utils.AnchorGenerator(tuple((s,) for s in sizes), ((0.5, 1.0, 2.0),) * len(sizes))
    pooled = 7  # MultiScaleRoIAlign's output side in torchvision's Faster R-CNN
    box_roi_pool = tv.ops.MultiScaleRoIAlign([str(k) for k in range(len(backbone.levels))], pooled, 2)
    box_head = det.faster_rcnn.TwoMLPHead(fpn_channels * pooled * pooled, box_head_size)
    predictor = det.faster_rcnn.FastRCNNPredictor(box_head_size, num_classes)
    return det.FasterRCNN(backbone, None, rpn_anchor_generator=anchors, box_roi_pool=box_roi_pool,
                          box_head=box_head, box_predictor=predictor, **common)  # fmt: skip
