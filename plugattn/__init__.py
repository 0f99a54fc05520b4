"""plugattn: faithful, fast, tested plug-and-play attention modules for convolutional networks."""

from __future__ import annotations

from pathlib import Path

import torch

from plugattn.attention import *  # noqa: F403  (the attention room's public names)
from plugattn.attention import __all__ as _attention_all

__version__ = "0.1.0"

__all__ = ["__version__", *_attention_all]

# models room
from plugattn.models import (  # noqa: E402
    create_model,
    detection_backbone,
    detection_model,
    insert_attention,
    list_models,
    mmcv_plugin,
    segmentation_model,
)

__all__ += [
    "create_model",
    "detection_backbone",
    "detection_model",
    "insert_attention",
    "list_models",
    "mmcv_plugin",
    "segmentation_model",
]

# what modules and models cost, measured side by side (`plugattn bench`)
from plugattn.benchmark import BenchReport, bench  # noqa: E402

__all__ += ["BenchReport", "bench"]


def load_model(checkpoint: str | Path, *, map_location: str | torch.device = "cpu") -> torch.nn.Module:
    """The trained model of a plugattn checkpoint (a run directory or its ``last.pt``), in eval mode."""
    from plugattn.runs import load_model as _load_model

    return _load_model(checkpoint, map_location=map_location)


__all__ += ["load_model"]
