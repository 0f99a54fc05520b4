"""Class activation maps through torchcam (``pip install 'plugattn[viz]'``).

torchcam (François-Guillaume Fernandez, https://github.com/frgfm/torch-cam) was chosen over
pytorch-grad-cam and captum: it offers both gradient-based CAMs (Grad-CAM, Grad-CAM++, XGradCAM,
LayerCAM) and gradient-free ones (Score-CAM, SS-CAM, IS-CAM) behind one interface, and needs only torch,
numpy, Pillow and matplotlib, so it installs beside the suite's CPU torch (pytorch-grad-cam requires
torchvision and OpenCV; captum has Grad-CAM but no gradient-free CAM).
"""

from __future__ import annotations

import torch
from torch import nn

from plugattn._checks import check_choice

__all__ = ["CAM_METHODS", "class_activation_maps", "default_target_layer"]

# Our names -> torchcam's classes; "scorecam" needs no gradient.
CAM_METHODS = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMpp",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "scorecam": "ScoreCAM",
}


def default_target_layer(model: nn.Module) -> str | None:
    """The last stage of a plugattn backbone (``feature_info``), the usual Grad-CAM layer; ``None``
    (torchcam finds the last convolutional output) for other models."""
    info = getattr(model, "feature_info", None)
    if info:
        return info[-1]["module"]
    return None


def class_activation_maps(
    model: nn.Module,
    x: torch.Tensor,
    *,
    methods: list[str] | tuple[str, ...] = ("gradcam", "scorecam"),
    layer: str | None = None,
    class_idx: list[int] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The logits of ``model(x)`` and, per method, a ``(B, h, w)`` map in [0, 1] at ``layer`` (default
    :func:`default_target_layer`) for class ``class_idx`` (default: each image's predicted class)."""
    try:
        import torchcam.methods as tc
    except ImportError as err:
        raise ImportError("class activation maps need torchcam: pip install 'plugattn[viz]'") from err
    for name in methods:
        check_choice("cam", name, tuple(CAM_METHODS))
    layer = layer if layer is not None else default_target_layer(model)
    if layer is not None and layer not in dict(model.named_modules()):
        raise ValueError(f"layer {layer!r} is not a module of {type(model).__name__}")
    model.eval()
    with torch.no_grad():
        logits = model(x)
    targets = class_idx if class_idx is not None else logits.argmax(1).tolist()
    shape = tuple(x.shape[1:])
    maps = {}
    for name in methods:
        extractor = getattr(tc, CAM_METHODS[name])(model, target_layer=layer, input_shape=shape)
        try:
            if name == "scorecam":
                with torch.no_grad():
                    scores = model(x)
                maps[name] = extractor(class_idx=targets, scores=scores)[0].detach()
            else:
                with torch.enable_grad():
                    scores = model(x)
                    maps[name] = extractor(class_idx=targets, scores=scores)[0].detach()
        finally:
            extractor.remove_hooks()
    return logits, maps
