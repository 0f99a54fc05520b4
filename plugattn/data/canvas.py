"""Detection and segmentation scenes made of real images: small items placed on larger canvases.

No detection or segmentation dataset can be downloaded on this project's machines, but Fashion-MNIST's
photographs of clothing can. :class:`CanvasDataset` places several of them on a dark canvas, each at a
random scale and position, and labels every scene twice from the same pixels:

* **boxes** for detection: the tight box (``x1, y1, x2, y2``, pixel edges) around the pixels an item
  still shows once later items are pasted over it, its class ``1..K`` (0 is torchvision's background) and
  its visible area in pixels (what COCO's area ranges read: small < 32², medium < 96²);
* a **semantic map** for segmentation: every pixel's class, ``0`` for background and ``1..K`` for the
  item drawn on top there.

An item's pixels are those brighter than ``threshold`` after scaling; darker pixels inside it show the
canvas. Items overlap (``max_overlap`` bounds how much of either box another one may cover), so some are
partly hidden, and with the default scales most are small in COCO's sense. The canvas is noise of
brightness up to ``background``.

Every scene is a function of ``(seed, index)`` alone: the same dataset object or a new one gives the
same scene, in any order, in any process.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from plugattn._checks import check_float, check_int
from plugattn.data.records import ArrayDataset

__all__ = ["CanvasDataset", "collate_scenes"]


class CanvasDataset:
    """Scenes of ``items`` (a grey or colour :class:`ArrayDataset`) on ``size`` × ``size`` canvases.

    Args:
        items: the images to place (uint8 ``(N, C, h, w)``) and their labels ``0..K-1``.
        length: number of scenes.
        size: canvas side in pixels (default 128).
        objects: least and most items per scene, inclusive (default 2 to 6).
        scale: least and most side of a placed item in pixels, inclusive (default 10 to 48); the
            aspect ratio varies by up to ``aspect`` either way.
        aspect: largest ratio of width to height or back (default 1.3).
        max_overlap: the most of a box's area another item's box may cover, in (0, 1] (default 0.3); an
            item that finds no such place in 30 tries is left out.
        threshold: brightness in [0, 1] above which a scaled item's pixel belongs to it (default 0.1).
        background: brightest value of the canvas noise in [0, 1) (default 0.1).
        seed: the scenes' seed; each scene is drawn from ``(seed, index)``.

    ``dataset[i]`` is ``(image, target)``: ``image`` float32 ``(C, size, size)`` in [0, 1]; ``target`` a
    dict with ``boxes`` float32 ``(n, 4)``, ``labels`` int64 ``(n,)`` in ``1..K``, ``area`` float32
    ``(n,)`` (visible pixels) and ``semantic`` int64 ``(size, size)`` in ``0..K``.
    """

    def __init__(
        self,
        items: ArrayDataset,
        length: int,
        *,
        size: int = 128,
        objects: tuple[int, int] = (2, 6),
        scale: tuple[int, int] = (10, 48),
        aspect: float = 1.3,
        max_overlap: float = 0.3,
        threshold: float = 0.1,
        background: float = 0.1,
        seed: int = 0,
    ) -> None:
        if not isinstance(items, ArrayDataset) or len(items) == 0:
            raise ValueError(f"items must be a non-empty ArrayDataset, got {items!r}")
        self.items = items
        self.length = check_int("length", length, minimum=1)
        self.size = check_int("size", size, minimum=8)
        self.objects = _check_pair("objects", objects, 1, 64)
        self.scale = _check_pair("scale", scale, 2, self.size)
        self.aspect = check_float("aspect", aspect, low=1.0, high=4.0)
        self.max_overlap = check_float("max_overlap", max_overlap, low=0.0, high=1.0, low_open=True)
        self.threshold = check_float("threshold", threshold, low=0.0, high=1.0, high_open=True)
        self.background = check_float("background", background, low=0.0, high=1.0, high_open=True)
        self.seed = check_int("seed", seed, minimum=0)

    @property
    def classes(self) -> list[str]:
        """Class names by label: ``classes[0]`` is the background."""
        return ["background", *self.items.classes]

    @property
    def num_classes(self) -> int:
        """Labels including the background (``1 + K``)."""
        return 1 + self.items.num_classes

    @property
    def in_chans(self) -> int:
        return self.items.in_chans

    def __len__(self) -> int:
        return self.length

    def __repr__(self) -> str:
        return (
            f"CanvasDataset(items={self.items.name!r}/{self.items.split!r}, length={self.length}, "
            f"size={self.size}, objects={self.objects}, scale={self.scale}, seed={self.seed})"
        )

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if not isinstance(index, int | np.integer) or not -self.length <= index < self.length:
            raise IndexError(f"index must be an int in [0, {self.length}), got {index!r}")
        index = int(index) % self.length
        rng = np.random.default_rng([self.seed, index])
        s = self.size
        image = torch.from_numpy(rng.uniform(0.0, self.background, (self.in_chans, s, s))).float()
        owner = torch.full((s, s), -1, dtype=torch.int64)  # which placed item shows at each pixel
        placed: list[tuple[int, int, int, int]] = []  # y, x, h, w of each placed item
        labels: list[int] = []
        for _ in range(int(rng.integers(self.objects[0], self.objects[1] + 1))):
            k = int(rng.integers(len(self.items)))
            h, w = self._item_size(rng)
            spot = self._free_spot(rng, h, w, placed)
            if spot is None:
                continue
            item, label = self.items[k]
            pixels = F.interpolate(item[None].float() / 255, (h, w), mode="bilinear", antialias=True)[0]
            mask = pixels.amax(0) > self.threshold  # (h, w)
            y, x = spot
            region = image[:, y : y + h, x : x + w]
            region[:, mask] = pixels[:, mask]
            owner[y : y + h, x : x + w][mask] = len(placed)
            placed.append((y, x, h, w))
            labels.append(label + 1)
        return image, self._target(owner, labels)

    def _item_size(self, rng: np.random.Generator) -> tuple[int, int]:
        side = rng.uniform(self.scale[0], self.scale[1])
        ratio = float(np.exp(rng.uniform(-np.log(self.aspect), np.log(self.aspect))))  # w / h
        h = int(round(side / np.sqrt(ratio)))
        w = int(round(side * np.sqrt(ratio)))
        return min(max(h, 2), self.size), min(max(w, 2), self.size)

    def _free_spot(
        self, rng: np.random.Generator, h: int, w: int, placed: list[tuple[int, int, int, int]]
    ) -> tuple[int, int] | None:
        for _ in range(30):
            y = int(rng.integers(self.size - h + 1))
            x = int(rng.integers(self.size - w + 1))
            if all(self._overlap_ok((y, x, h, w), other) for other in placed):
                return y, x
        return None

    def _overlap_ok(self, a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
        dy = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
        dx = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
        inter = max(dy, 0) * max(dx, 0)
        return inter <= self.max_overlap * min(a[2] * a[3], b[2] * b[3])

    def _target(self, owner: torch.Tensor, labels: list[int]) -> dict[str, torch.Tensor]:
        boxes, kept, areas = [], [], []
        for j, label in enumerate(labels):
            ys, xs = torch.nonzero(owner == j, as_tuple=True)
            if ys.numel() == 0:  # hidden entirely, or no pixel above the threshold
                continue
            boxes.append([xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1])
            kept.append(label)
            areas.append(ys.numel())
        label_of = torch.tensor([0, *labels], dtype=torch.int64)
        return {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(kept, dtype=torch.int64),
            "area": torch.tensor(areas, dtype=torch.float32),
            "semantic": label_of[owner + 1],  # owner -1 (background) -> 0, item j -> its label
        }


def collate_scenes(
    batch: list[tuple[torch.Tensor, dict[str, torch.Tensor]]],
) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """A ``DataLoader`` ``collate_fn``: scenes stacked into ``(B, C, S, S)``, their targets a list."""
    images = torch.stack([image for image, _ in batch])
    return images, [target for _, target in batch]


def _check_pair(name: str, value: Any, low: int, high: int) -> tuple[int, int]:
    if (
        not isinstance(value, tuple | list)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        or not low <= value[0] <= value[1] <= high
    ):
        raise ValueError(
            f"{name} must be two ints (least, most) with {low} <= least <= most <= {high}, got {value!r}"
        )
    return int(value[0]), int(value[1])
