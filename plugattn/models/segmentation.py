"""Semantic FPN: a light semantic-segmentation head over any ``features_only`` backbone.

A. Kirillov, R. Girshick, K. He, P. Dollár, "Panoptic Feature Pyramid Networks", CVPR 2019,
https://arxiv.org/abs/1901.02446 — its semantic-segmentation branch (Sec. 3, Fig. 3), over the FPN of
T.-Y. Lin et al., "Feature Pyramid Networks for Object Detection", CVPR 2017,
https://arxiv.org/abs/1612.03144. Pure torch: no torchvision, so it works in the core environment.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from plugattn._checks import check_divisible, check_int
from plugattn.attention.registry import AttentionSpec
from plugattn.models.registry import create_model

__all__ = ["SemanticFPN", "segmentation_model"]


def _feature_levels(backbone: Any) -> tuple[list[int], list[int]]:
    """The channels and reductions of ``backbone``'s feature maps, checked: a 2-D ``features_only`` model
    whose reductions rise from the finest by powers of 2."""
    if not isinstance(backbone, nn.Module):
        raise ValueError(f"backbone must be an nn.Module, got {type(backbone).__name__}")
    info = getattr(backbone, "feature_info", None)
    if info is None:
        raise ValueError(
            f"backbone must describe its feature maps in feature_info (a plugattn model built with "
            f"features_only=True, or a timm features_only model); {type(backbone).__name__} has none"
        )
    if getattr(backbone, "features_only", True) is not True:
        raise ValueError(
            f"backbone must be built with features_only=True (its forward returns the feature maps); "
            f"this {type(backbone).__name__} returns logits"
        )
    if getattr(backbone, "spatial_dims", 2) != 2:
        raise ValueError(
            f"backbone must take images (spatial_dims=2), got spatial_dims={backbone.spatial_dims}"
        )
    # plugattn's and timm's FeatureInfo both answer .channels()/.reduction(); a plain list of dicts too.
    if callable(getattr(info, "channels", None)) and callable(getattr(info, "reduction", None)):
        channels, reductions = list(info.channels()), list(info.reduction())
    else:
        try:
            channels, reductions = [i["num_chs"] for i in info], [i["reduction"] for i in info]
        except (TypeError, KeyError) as err:
            raise ValueError(
                f"backbone.feature_info must list dicts with 'num_chs' and 'reduction', got {info!r}"
            ) from err
    if not channels or len(channels) != len(reductions):
        raise ValueError(f"backbone.feature_info must describe at least one feature map, got {info!r}")
    where = "backbone.feature_info[{}]['{}']"
    channels = [check_int(where.format(i, "num_chs"), c, minimum=1) for i, c in enumerate(channels)]
    reductions = [check_int(where.format(i, "reduction"), r, minimum=1) for i, r in enumerate(reductions)]
    finest = reductions[0]
    ratios = [r // finest if r % finest == 0 else 0 for r in reductions]  # 0: not a multiple
    rising = all(b > a for a, b in zip(ratios[:-1], ratios[1:], strict=True))
    if not rising or not all(q > 0 and q & (q - 1) == 0 for q in ratios):
        raise ValueError(
            f"backbone.feature_info reductions must rise from the finest map's by powers of 2 "
            f"(e.g. [4, 8, 16, 32]), got {reductions}"
        )
    return channels, reductions


def _conv_gn_relu(in_chs: int, out_chs: int, groups: int) -> nn.Sequential:
    """3×3 conv (no bias: GroupNorm follows), GroupNorm, ReLU."""
    return nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(in_chs, out_chs, 3, padding=1, bias=False),
            norm=nn.GroupNorm(groups, out_chs),
            act=nn.ReLU(inplace=True),
        )
    )


class SemanticFPN(nn.Module):
    """Semantic FPN: an FPN over the backbone's maps, each level upsampled to the finest, summed, classified.

    For backbone maps ``C_0 … C_{L-1}`` at reductions ``r_0 · 2^{k_i}`` (``k_0 = 0``, finest first):

        FPN (Lin et al., Sec. 3)
          lateral_i   = Conv1×1_i(C_i)                                   (B, channels, H_i, W_i)
          M_{L-1}     = lateral_{L-1}
          M_i         = lateral_i + Nearest↑(M_{i+1}, size of C_i)       (top-down pathway)
          P_i         = Conv3×3_i(M_i)                                   (B, channels, H_i, W_i)
        semantic branch (Kirillov et al., Sec. 3, Fig. 3)
          S_i         = [Conv3×3 → GN → ReLU → Bilinear 2↑] × k_i (P_i)  (B, head_channels, H_0, W_0)
          S_0         = Conv3×3 → GN → ReLU (P_0)                        (no upsampling)
          logits      = Bilinear↑(Conv1×1(Σ_i S_i), H × W)               (B, num_classes, H, W)

    Each upsampling goes to the exact size of the map at the next finer reduction (the backbone's map there
    when it has one, else twice the current size; the last step always lands on the finest map's size),
    so odd input sizes, whose maps are rounded up at every stride, line up.

    Args:
        backbone: a model built with ``features_only=True`` (``forward`` returns a list of
            ``(B, C_i, H_i, W_i)`` maps) that has ``feature_info`` (``.channels()``, ``.reduction()``);
            reductions must be the finest's times powers of 2, increasing.
        num_classes: output channels of the logits.
        channels: FPN width (default 64).
        head_channels: width of the semantic branch (default 64), divisible by ``groups``.
        groups: GroupNorm groups of the semantic branch (default 8).

    Attributes: ``backbone``; ``lateral``/``output`` (the FPN's 1×1 and 3×3 convs, one per level);
    ``head`` (per level the conv-GN-ReLU blocks); ``classifier``; ``upsampling_steps`` (``k_i``).

    Initialisation as Detectron2's: FPN convs Kaiming-uniform ``a = 1`` ("Xavier fill"), branch convs and
    classifier Kaiming-normal fan-out ("MSRA fill"), biases 0; the backbone is left as built.

    Differences from the paper:

    * Widths 64/64 by default (the paper's FPN 256 and branch 128) so the head trains on a CPU.
    * The levels are whatever the backbone returns (all of them), not necessarily P2-P5 at 1/4-1/32;
      the branch works at the finest level's stride (1/2 for MobileNetV2 and RepVGG, whose first stage
      is at stride 2, where the paper's is 1/4). No extra P6 level.
    * GroupNorm with ``groups`` groups (8; the paper follows Wu & He's GroupNorm, 32 groups) in the
      branch; the FPN itself has no normalisation, as Lin et al.'s.
    * Upsampling to exact sizes (``F.interpolate(size=...)``) instead of a fixed factor of 2 (and of 4
      for the logits), so inputs need not be multiples of the coarsest stride.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        *,
        channels: int = 64,
        head_channels: int = 64,
        groups: int = 8,
    ) -> None:
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes, minimum=1)
        channels = check_int("channels", channels, minimum=1)
        head_channels = check_int("head_channels", head_channels, minimum=1)
        groups = check_int("groups", groups, minimum=1)
        check_divisible("head_channels", head_channels, groups, "groups")
        in_channels, reductions = _feature_levels(backbone)

        self.backbone = backbone
        self.upsampling_steps = tuple(int(math.log2(r // reductions[0])) for r in reductions)
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.output = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in in_channels)
        self.head = nn.ModuleList(
            nn.ModuleList(
                _conv_gn_relu(channels if j == 0 else head_channels, head_channels, groups)
                for j in range(max(1, k))
            )
            for k in self.upsampling_steps
        )
        self.classifier = nn.Conv2d(head_channels, num_classes, 1)
        self._init_weights()

    def _init_weights(self) -> None:
        for conv in [*self.lateral, *self.output]:
            nn.init.kaiming_uniform_(conv.weight, a=1)
            nn.init.zeros_(conv.bias)
        for m in [*self.head.modules(), self.classifier]:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def pyramid(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """The FPN outputs ``P_i``, ``(B, channels, H_i, W_i)``, finest first."""
        laterals = [conv(f) for conv, f in zip(self.lateral, features, strict=True)]
        merged = [laterals[-1]]
        for lateral in reversed(laterals[:-1]):  # top-down: coarse to fine
            merged.append(lateral + F.interpolate(merged[-1], size=lateral.shape[-2:], mode="nearest"))
        return [conv(m) for conv, m in zip(self.output, reversed(merged), strict=True)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)
        if not isinstance(features, (list, tuple)) or len(features) != len(self.lateral):
            raise ValueError(
                f"the backbone must return a list of {len(self.lateral)} feature maps (its feature_info), "
                f"got {type(features).__name__}"
                + (f" of {len(features)}" if isinstance(features, (list, tuple)) else "")
            )
        pyramid = self.pyramid(list(features))
        size_at = {k: p.shape[-2:] for k, p in zip(self.upsampling_steps, pyramid, strict=True)}
        summed = None
        for k, p, blocks in zip(self.upsampling_steps, pyramid, self.head, strict=True):
            for j, block in enumerate(blocks):
                p = block(p)
                if j < k:  # to the next finer stride, 2^(k - j - 1) times the finest
                    h, w = p.shape[-2:]
                    size = size_at[0] if j == k - 1 else size_at.get(k - j - 1, (2 * h, 2 * w))
                    p = F.interpolate(p, size=size, mode="bilinear", align_corners=False)
            summed = p if summed is None else summed + p  # (B, head_channels, H_0, W_0)
        logits = self.classifier(summed)  # (B, num_classes, H_0, W_0)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def segmentation_model(
    name: str,
    *,
    num_classes: int,
    attention: AttentionSpec = None,
    position: str | None = None,
    in_chans: int = 3,
    channels: int = 64,
    head_channels: int = 64,
    **backbone_kwargs: Any,
) -> SemanticFPN:
    """A registered backbone (``list_models()``) built with ``features_only=True`` under a
    :class:`SemanticFPN`; ``attention``/``position``/``in_chans``/``**backbone_kwargs`` go to
    :func:`~plugattn.models.create_model` (e.g. ``img_size``/``window_size`` for Swin), ``groups`` of the
    head is 8."""
    check_int("num_classes", num_classes, minimum=1)
    check_int("channels", channels, minimum=1)
    check_int("head_channels", head_channels, minimum=1)
    check_divisible("head_channels", head_channels, 8, "groups")
    if "features_only" in backbone_kwargs:
        raise ValueError("features_only is always True for a segmentation backbone; do not pass it")
    backbone = create_model(
        name, attention=attention, position=position, features_only=True, in_chans=in_chans, **backbone_kwargs
    )
    return SemanticFPN(backbone, num_classes, channels=channels, head_channels=head_channels)
