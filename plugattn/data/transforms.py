"""Augmentation: whole-batch tensor ops for in-memory images and signals, per-image Pillow ops for image
folders.

All randomness comes from what the caller passes — a ``torch.Generator`` for batches, an integer seed per
image for folders — never from global RNG state, so a run resumed at an epoch boundary sees exactly the
same augmented batches as the run it continues.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from plugattn._checks import check_float, check_int

__all__ = ["BatchAugment", "RandomResizedCropFlip", "ResizeCenterCrop", "SignalAugment", "normalize"]


def _stats_tensor(name: str, values: Sequence[float]) -> torch.Tensor:
    t = torch.as_tensor([float(v) for v in values], dtype=torch.float32)
    if t.dim() != 1 or len(t) == 0:
        raise ValueError(f"{name} must be a non-empty sequence of per-channel values, got {values!r}")
    return t


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 ``(B, C, H, W)`` in 0..255 → float32 ``(x / 255 - mean) / std`` per channel."""
    x = images.to(torch.float32).div_(255.0)
    return x.sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))


class BatchAugment:
    """Random pad-and-crop, horizontal flip and normalisation of a whole uint8 batch at once.

    Pad-and-crop zero-pads each image by ``pad`` pixels on every side and cuts an ``H x W`` window at a
    random offset ``(dy, dx)`` in ``[0, 2 * pad]`` per image (the usual CIFAR "pad 4, random crop 32"); the
    flip mirrors each image left-right with probability 0.5. Both are one gather over the batch, no
    per-image Python loop. With ``pad=0`` and ``flip=False`` this is the evaluation transform: normalise
    only, and no generator is needed.

    Args:
        pad: zero padding in pixels on each side before the random crop (default 0: no crop).
        flip: random horizontal flip with p = 0.5 (default False).
        mean: per-channel mean in [0, 1] units.
        std: per-channel standard deviation in [0, 1] units.
    """

    def __init__(
        self, pad: int = 0, flip: bool = False, *, mean: Sequence[float], std: Sequence[float]
    ) -> None:
        self.pad = check_int("pad", pad, minimum=0)
        if not isinstance(flip, bool):
            raise ValueError(f"flip must be a bool, got {flip!r}")
        self.flip = flip
        self.mean = _stats_tensor("mean", mean)
        self.std = _stats_tensor("std", std)
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean and std must have the same length, got mean={mean!r}, std={std!r}")
        if bool((self.std <= 0).any()):
            raise ValueError(f"std must be positive, got {std!r}")

    @property
    def random(self) -> bool:
        """Whether the transform draws random numbers (and so needs a generator)."""
        return self.pad > 0 or self.flip

    def sample_params(
        self, batch: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Draw per-image crop offsets ``dy, dx`` (int64 ``(B,)``, in ``[0, 2*pad]``) and flips (bool).

        Offsets are drawn first, then flips, each only when enabled.
        """
        zeros = torch.zeros(batch, dtype=torch.int64)
        if self.pad > 0:
            offsets = torch.randint(0, 2 * self.pad + 1, (2, batch), generator=generator)  # (2, B)
            dy, dx = offsets[0], offsets[1]
        else:
            dy, dx = zeros, zeros
        if self.flip:
            flips = torch.rand(batch, generator=generator) < 0.5  # (B,)
        else:
            flips = torch.zeros(batch, dtype=torch.bool)
        return dy, dx, flips

    def apply(
        self, images: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flips: torch.Tensor
    ) -> torch.Tensor:
        """Crop at ``(dy, dx)`` from the ``pad``-padded images, mirror where ``flips``; uint8 ``(B, C, H, W)``

        Output pixel ``(i, j)`` of image ``b`` is padded pixel ``(dy[b] + i, dx[b] + j)``, or
        ``(dy[b] + i, dx[b] + W - 1 - j)`` when ``flips[b]``; flipping after cropping is the same as
        cropping the flipped image at the mirrored offset, so one gather does both.
        """
        b, c, h, w = images.shape
        p = self.pad
        hp, wp = h + 2 * p, w + 2 * p
        padded = torch.nn.functional.pad(images, (p, p, p, p)) if p else images  # (B, C, Hp, Wp)
        rows = dy.view(b, 1) + torch.arange(h).view(1, h)  # (B, H)
        cols = torch.where(
            flips.view(b, 1), torch.arange(w - 1, -1, -1).view(1, w), torch.arange(w).view(1, w)
        )  # (B, W)
        cols = dx.view(b, 1) + cols  # (B, W)
        # One gather over each image's flattened pixels: several times faster on CPU than indexing with
        # four broadcast index tensors.
        flat_index = (rows.view(b, h, 1) * wp + cols.view(b, 1, w)).view(b, 1, h * w)  # (B, 1, H*W)
        out = padded.reshape(b, c, hp * wp).gather(2, flat_index.expand(b, c, h * w))  # (B, C, H*W)
        return out.view(b, c, h, w)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment and normalise a batch: uint8 ``(B, C, H, W)`` → float32 ``(B, C, H, W)``.

        Args:
            images: uint8 ``(B, C, H, W)``, values 0..255, ``C == len(mean)``.
            generator: the source of all randomness; required when ``pad > 0`` or ``flip``.
        """
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(
                f"images must be a uint8 tensor (B, C, H, W), got {images.dtype} {tuple(images.shape)}"
            )
        if images.shape[1] != len(self.mean):
            raise ValueError(f"images have {images.shape[1]} channels but mean/std have {len(self.mean)}")
        if self.random:
            if generator is None:
                raise ValueError(
                    "generator is required when pad > 0 or flip=True (randomness comes only from it)"
                )
            dy, dx, flips = self.sample_params(images.shape[0], generator)
            images = self.apply(images, dy, dx, flips)
        return normalize(images, self.mean, self.std).contiguous()

    def __repr__(self) -> str:
        mean = tuple(round(v, 4) for v in self.mean.tolist())
        std = tuple(round(v, 4) for v in self.std.tolist())
        return f"BatchAugment(pad={self.pad}, flip={self.flip}, mean={mean}, std={std})"


class SignalAugment:
    """Random time shift and Gaussian noise on a whole float32 batch of standardised signals at once.

    The shift moves each trial by ``s`` samples, ``s`` drawn uniformly from ``[-shift, shift]`` per trial,
    filling the samples it uncovers with zeros (the channel mean, after standardisation):
    ``out[b, c, t] = x[b, c, t - s[b]]`` where ``0 <= t - s[b] < L``, else 0. The noise adds
    ``noise * N(0, 1)`` to every value, in standardised units (so ``noise=0.1`` is a tenth of a channel's
    standard deviation). Shifts are drawn first, then noise, each only when enabled. With ``shift=0`` and
    ``noise=0`` (the default, and the evaluation transform) the batch passes through unchanged.

    Args:
        shift: largest time shift in samples (default 0: none).
        noise: standard deviation of the added Gaussian noise, standardised units (default 0: none).
    """

    def __init__(self, shift: int = 0, noise: float = 0.0) -> None:
        self.shift = check_int("shift", shift, minimum=0)
        self.noise = check_float("noise", noise, low=0.0)

    @property
    def random(self) -> bool:
        """Whether the transform draws random numbers (and so needs a generator)."""
        return self.shift > 0 or self.noise > 0

    def __call__(self, signals: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment a batch: float32 ``(B, C, L)`` → float32 ``(B, C, L)`` (a new tensor when augmented)."""
        if signals.dtype != torch.float32 or signals.dim() != 3:
            raise ValueError(
                f"signals must be a float32 tensor (B, C, L), got {signals.dtype} {tuple(signals.shape)}"
            )
        if not self.random:
            return signals
        if generator is None:
            raise ValueError(
                "generator is required when shift > 0 or noise > 0 (randomness comes only from it)"
            )
        b, c, length = signals.shape
        if self.shift > 0:
            s = self.shift
            offsets = torch.randint(-s, s + 1, (b, 1, 1), generator=generator)  # (B, 1, 1)
            padded = torch.nn.functional.pad(signals, (s, s))  # (B, C, L + 2s), zeros either side
            index = torch.arange(length).view(1, 1, length) + s - offsets  # (B, 1, L), in [0, L + 2s)
            signals = padded.gather(2, index.expand(b, c, length))  # (B, C, L)
        if self.noise > 0:
            noise = torch.randn(signals.shape, generator=generator, dtype=signals.dtype)  # (B, C, L)
            signals = signals + self.noise * noise
        return signals

    def __repr__(self) -> str:
        return f"SignalAugment(shift={self.shift}, noise={self.noise})"


# --------------------------------------------------------------------------------------------------------
# Per-image transforms for image folders (Pillow in, uint8 (3, size, size) tensor out)
# --------------------------------------------------------------------------------------------------------
def _pil_to_tensor(img: Any) -> torch.Tensor:
    array = np.asarray(img, dtype=np.uint8)  # (H, W, 3)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()  # (3, H, W)


def _bilinear() -> Any:
    from PIL import Image

    return Image.Resampling.BILINEAR


class RandomResizedCropFlip:
    """Training transform for image folders: RandomResizedCrop to ``size`` then a random horizontal flip.

    The crop covers a random fraction of the image area drawn uniformly from ``scale`` with an aspect ratio
    drawn log-uniformly from ``ratio``, at a uniform random position (10 tries, then a centre crop with the
    ratio clamped — the algorithm of torchvision's ``RandomResizedCrop``), resized bilinearly (with
    antialiasing) to ``size x size``. Randomness comes only from ``seed``.

    Args:
        size: output height and width in pixels (default 224).
        scale: range of the crop's area as a fraction of the image's (default (0.08, 1.0)).
        ratio: range of the crop's width / height (default (3/4, 4/3)).
        flip: random horizontal flip with p = 0.5 (default True).
    """

    def __init__(
        self,
        size: int = 224,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip: bool = True,
    ) -> None:
        self.size = check_int("size", size, minimum=1)
        self.scale = _check_range("scale", scale, high=1.0)
        self.ratio = _check_range("ratio", ratio)
        self.flip = bool(flip)

    def crop_box(self, width: int, height: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        """The crop as ``(left, top, right, bottom)`` in pixels."""
        area = width * height
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target_area = area * rng.uniform(*self.scale)
            aspect = math.exp(rng.uniform(*log_ratio))
            w = round(math.sqrt(target_area * aspect))
            h = round(math.sqrt(target_area / aspect))
            if 0 < w <= width and 0 < h <= height:
                top = int(rng.integers(0, height - h + 1))
                left = int(rng.integers(0, width - w + 1))
                return left, top, left + w, top + h
        in_ratio = width / height  # fallback: the largest centre crop with the ratio clamped into range
        if in_ratio < self.ratio[0]:
            w, h = width, round(width / self.ratio[0])
        elif in_ratio > self.ratio[1]:
            w, h = round(height * self.ratio[1]), height
        else:
            w, h = width, height
        top, left = (height - h) // 2, (width - w) // 2
        return left, top, left + w, top + h

    def __call__(self, img: Any, seed: int) -> torch.Tensor:
        """PIL RGB image → uint8 ``(3, size, size)``, random from ``seed`` alone."""
        from PIL import Image

        rng = np.random.default_rng(seed)
        box = self.crop_box(img.width, img.height, rng)
        out = img.resize((self.size, self.size), _bilinear(), box=box)
        if self.flip and rng.random() < 0.5:
            out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return _pil_to_tensor(out)

    def __repr__(self) -> str:
        return (
            f"RandomResizedCropFlip(size={self.size}, scale={self.scale}, ratio={self.ratio}, "
            f"flip={self.flip})"
        )


class ResizeCenterCrop:
    """Evaluation transform for image folders: resize the shorter side to ``resize``, centre-crop ``size``.

    Args:
        size: output height and width in pixels (default 224).
        resize: length of the shorter side after resizing, in pixels (default 256; must be >= ``size``).
    """

    def __init__(self, size: int = 224, resize: int = 256) -> None:
        self.size = check_int("size", size, minimum=1)
        self.resize = check_int("resize", resize, minimum=self.size)

    def __call__(self, img: Any, seed: int | None = None) -> torch.Tensor:
        """PIL RGB image → uint8 ``(3, size, size)``; ``seed`` is ignored (nothing is random)."""
        width, height = img.width, img.height
        if width <= height:
            new_w, new_h = self.resize, max(1, round(height * self.resize / width))
        else:
            new_w, new_h = max(1, round(width * self.resize / height)), self.resize
        img = img.resize((new_w, new_h), _bilinear())
        left = int(round((new_w - self.size) / 2.0))
        top = int(round((new_h - self.size) / 2.0))
        return _pil_to_tensor(img.crop((left, top, left + self.size, top + self.size)))

    def __repr__(self) -> str:
        return f"ResizeCenterCrop(size={self.size}, resize={self.resize})"


def _check_range(name: str, value: Any, *, high: float | None = None) -> tuple[float, float]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{name} must be a pair (low, high), got {value!r}")
    low = check_float(f"{name}[0]", value[0], low=0.0, low_open=True, high=high)
    top = check_float(f"{name}[1]", value[1], low=low, high=high)
    return (low, top)


def load_image_files(
    files: Sequence[str | Path],
    *,
    channels: int,
    size: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
) -> torch.Tensor:
    """Image files (anything Pillow reads) as a normalised ``(N, channels, H, W)`` batch: grey-scale for
    one channel, RGB for three, resized to ``size`` (height, width) with a centre crop that keeps the
    aspect ratio (the shorter side is resized to fit)."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as err:
        raise ImportError("reading image files needs Pillow: pip install 'plugattn[train]'") from err
    if channels not in (1, 3):
        raise ValueError(f"image files give 1 (grey) or 3 (RGB) channels; the model takes {channels}")
    h, w = size
    batch = []
    for f in files:
        try:
            with Image.open(f) as img:
                img = img.convert("L" if channels == 1 else "RGB")
        except (OSError, UnidentifiedImageError) as err:
            raise ValueError(f"image {str(f)!r} cannot be read as an image: {err}") from err
        scale = max(h / img.height, w / img.width)
        new_w, new_h = max(w, round(img.width * scale)), max(h, round(img.height * scale))
        img = img.resize((new_w, new_h), _bilinear())
        left, top = (new_w - w) // 2, (new_h - h) // 2
        array = np.asarray(img.crop((left, top, left + w, top + h)), dtype=np.uint8)
        batch.append(torch.from_numpy(array.copy()).reshape(h, w, channels).permute(2, 0, 1))
    return normalize(torch.stack(batch), _stats_tensor("mean", mean), _stats_tensor("std", std))
