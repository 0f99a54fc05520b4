"""Backbones with attention at the papers' places, retrofit into any model, and timm/mmcv interop.

* :func:`create_model` / :func:`list_models` — the registered backbones (``resnet.py``: CIFAR
  ResNets, Wide ResNets, ResNeXt-29, the ImageNet-layout ResNets/ResNeXt, the 3-D ResNet-10 and the
  1-D ResNet-18; ``mobilenetv2.py``; ``repvgg.py``: RepVGG-A0/A1/A2/B0 and their re-parameterisation;
  ``swin.py`` with ``swin_block.py``: Swin-T/S; ``eegnet.py``: EEGNet for EEG trials
  ``(B, n_chans, n_times)``).
* :mod:`~plugattn.models.blocks` — the residual blocks, each with one attention hook ``attn``, in 1-D,
  2-D or 3-D (``spatial_dims``; layers by dimension in :mod:`~plugattn.models.layers`).
* :mod:`~plugattn.models.placement` — the positions vocabulary shared by blocks and retrofit.
* :func:`detection_backbone` / :func:`detection_model` — a ``features_only`` backbone under
  torchvision's FPN, inside its Faster R-CNN, RetinaNet or FCOS (``detection.py``; torchvision is the
  ``detection`` extra); :func:`segmentation_model` — the backbone under a Semantic FPN head
  (``segmentation.py``, pure torch).
* :func:`insert_attention` — attention into a model built elsewhere (torchvision, timm, ours).
* :func:`mmcv_plugin` — an attention as an mmcv/mmdet plugin class.

See ``docs/models.md``.
"""

from plugattn.models import eegnet as _eegnet  # noqa: F401  (registers its model)
from plugattn.models import mobilenetv2 as _mobilenetv2  # noqa: F401  (registers its models)
from plugattn.models import repvgg as _repvgg  # noqa: F401  (registers its models)
from plugattn.models import resnet as _resnet  # noqa: F401  (registers its models)
from plugattn.models import swin as _swin  # noqa: F401  (registers its models)
from plugattn.models.blocks import (
    BasicBlock,
    Bottleneck,
    PreActBasicBlock,
    ResidualBlock,
    ShortcutA,
    init_weights,
)
from plugattn.models.constraints import MaxNormConv2d, MaxNormLinear
from plugattn.models.detection import DetectionBackbone, detection_backbone, detection_model
from plugattn.models.eegnet import EEGNET_POSITIONS, EEGNet
from plugattn.models.features import FeatureInfo
from plugattn.models.interop import AttentionPlugin, mmcv_plugin, register_mmcv_plugin
from plugattn.models.mobilenetv2 import InvertedResidual, MobileNetV2
from plugattn.models.placement import POSITIONS
from plugattn.models.registry import ModelEntry, create_model, list_models, model_entry, register_model
from plugattn.models.repvgg import REPVGG_POSITIONS, RepVGG, RepVGGBlock, reparameterize
from plugattn.models.resnet import ResNet
from plugattn.models.retrofit import AttentionAfter, AttentionBefore, find_blocks, insert_attention
from plugattn.models.segmentation import SemanticFPN, segmentation_model
from plugattn.models.swin import SWIN_POSITIONS, SwinTransformer

__all__ = [
    "EEGNET_POSITIONS",
    "POSITIONS",
    "REPVGG_POSITIONS",
    "SWIN_POSITIONS",
    "AttentionAfter",
    "AttentionBefore",
    "AttentionPlugin",
    "BasicBlock",
    "Bottleneck",
    "DetectionBackbone",
    "EEGNet",
    "FeatureInfo",
    "InvertedResidual",
    "MaxNormConv2d",
    "MaxNormLinear",
    "MobileNetV2",
    "ModelEntry",
    "PreActBasicBlock",
    "RepVGG",
    "RepVGGBlock",
    "ResNet",
    "ResidualBlock",
    "SemanticFPN",
    "ShortcutA",
    "SwinTransformer",
    "create_model",
    "detection_backbone",
    "detection_model",
    "find_blocks",
    "init_weights",
    "insert_attention",
    "list_models",
    "mmcv_plugin",
    "model_entry",
    "register_mmcv_plugin",
    "register_model",
    "reparameterize",
    "segmentation_model",
]
