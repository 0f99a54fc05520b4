"""Synthetic, learnable image data generated from a seed: for tests and smoke runs, never a result."""

from __future__ import annotations

import torch

from plugattn._checks import check_choice, check_int
from plugattn.data._seed import derive_seed
from plugattn.data.records import ArrayDataset

__all__ = ["make_synthetic"]


def make_synthetic(
    split: str,
    *,
    num_samples: int | None = None,
    image_size: int = 32,
    in_chans: int = 3,
    num_classes: int = 10,
    seed: int = 0,
) -> ArrayDataset:
    """A generated, learnable dataset for tests and smoke runs. Never report results on it.

    Each class has a smooth random template (a 4x4 pattern per channel, upsampled bilinearly, fixed by
    ``seed``); an image is its class's template plus Gaussian pixel noise (std 0.15 in [0, 1] units), so a
    tiny network beats chance within a few steps. The templates are the same in every split; labels, noise
    and order differ per split. Everything is deterministic from ``(seed, split)``.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``.
        num_samples: images in the split (default 1024 for train, 256 otherwise); classes are balanced.
        image_size: height and width in pixels (default 32).
        in_chans: channels (default 3).
        num_classes: classes (default 10).
        seed: seed of the templates and the samples (default 0).
    """
    check_choice("split", split, ("train", "val", "test"))
    if num_samples is None:
        num_samples = 1024 if split == "train" else 256
    check_int("num_samples", num_samples, minimum=1)
    check_int("image_size", image_size, minimum=4)
    check_int("in_chans", in_chans, minimum=1)
    check_int("num_classes", num_classes, minimum=2)
    check_int("seed", seed, minimum=0)

    g = torch.Generator().manual_seed(derive_seed("synthetic-templates", seed))
    coarse = torch.rand(num_classes, in_chans, 4, 4, generator=g)  # (K, C, 4, 4)
    templates = torch.nn.functional.interpolate(
        coarse, size=(image_size, image_size), mode="bilinear", align_corners=False
    )  # (K, C, S, S) in [0, 1]
    g = torch.Generator().manual_seed(derive_seed("synthetic-samples", seed, split))
    labels = torch.arange(num_samples) % num_classes
    labels = labels[torch.randperm(num_samples, generator=g)]  # (N,)
    noise = 0.15 * torch.randn(num_samples, in_chans, image_size, image_size, generator=g)
    images = (0.2 + 0.6 * templates[labels] + noise).clamp(0, 1)  # (N, C, S, S)
    return ArrayDataset(
        images=(images * 255).round().to(torch.uint8),
        labels=labels.to(torch.int64),
        classes=[f"class_{k}" for k in range(num_classes)],
        mean=(0.5,) * in_chans,  # fixed, roughly right: 0.2 + 0.6 * U(0, 1) has mean 0.5
        std=(0.25,) * in_chans,
        name="synthetic",
        split=split,
    )
