"""Progressive resizing: early epochs train on downscaled batches, the last ones at full size.

A convolutional network with global pooling takes any input size, and most of what it learns early is
coarse; training the first epochs on smaller images buys more epochs for the same time. As MosaicML
Composer's progressive resizing (``initial_scale``, ``finetune_fraction``): the scale grows linearly from
``initial_scale`` at the first epoch to 1 at the start of the last ``finetune_fraction`` of the epochs,
which then train (and every evaluation runs) at full size. The scale is held for a whole epoch, and the
size is rounded to a multiple of 4 so a network's strided stages divide it evenly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from plugattn._checks import check_float, check_int

__all__ = ["check_progressive", "epoch_scale", "resize_batch"]

_KEYS = ("initial_scale", "finetune_fraction")


def check_progressive(options: dict) -> dict:
    """Validate ``progressive_resize`` options (``{}``: off); returns them."""
    if not isinstance(options, dict):
        raise ValueError(f"progressive_resize must be a mapping of {', '.join(_KEYS)}, got {options!r}")
    unknown = sorted(set(options) - set(_KEYS))
    if unknown:
        raise ValueError(f"progressive_resize: unknown option(s) {unknown}; options: {', '.join(_KEYS)}")
    if options:
        check_float("progressive_resize.initial_scale", options.get("initial_scale", 0.5), low=0,
                    high=1, low_open=True)  # fmt: skip
        check_float("progressive_resize.finetune_fraction", options.get("finetune_fraction", 0.2), low=0,
                    high=1)  # fmt: skip
    return options


def epoch_scale(epoch: int, epochs: int, options: dict) -> float:
    """The training scale of 0-based ``epoch`` of ``epochs`` (1.0 when ``options`` is empty)."""
    check_int("epoch", epoch, minimum=0)
    check_int("epochs", epochs, minimum=1)
    if not options:
        return 1.0
    initial = float(options.get("initial_scale", 0.5))
    ramp = epochs * (1.0 - float(options.get("finetune_fraction", 0.2)))  # epochs before full size
    if epoch >= ramp or ramp <= 0:
        return 1.0
    return initial + (1.0 - initial) * epoch / ramp


def resize_batch(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``x`` ``(B, C, H, W)`` resized by ``scale`` (bilinear, antialiased), sides rounded to multiples of
    4 (at least 4); unchanged at scale 1 or when the rounded size is the input's."""
    h, w = x.shape[-2:]
    size = tuple(max(4, 4 * round(s * scale / 4)) for s in (h, w))
    if scale == 1.0 or size == (h, w):
        return x
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
