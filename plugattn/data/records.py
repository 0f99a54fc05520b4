"""What every reader returns: an in-memory :class:`ArrayDataset` or a lazily decoded :class:`FolderDataset`
of images, a :class:`SignalDataset` of multichannel time series, and the errors a reader raises (each
naming the file and what is wrong).

In-memory datasets (Fashion-MNIST, CIFAR-10/100, STL-10, synthetic) hold one uint8 tensor of images and one
int64 tensor of labels, so the loader slices batches and augments them as whole tensors. Image folders
hold paths, decoded with Pillow in a worker pool. Signal datasets (EEG, UEA/UCR ``.ts`` sets) hold one
float32 tensor of already standardised trials ``(N, C, L)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "IMAGENET_STATS",
    "ArrayDataset",
    "DatasetError",
    "DatasetNotFoundError",
    "FolderDataset",
    "SignalDataset",
    "check_label_range",
]


class DatasetError(ValueError):
    """A dataset file is missing, truncated or corrupt, or its contents are out of range."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """The dataset's files are not where they were looked for (caught as ValueError or FileNotFoundError)."""


# ImageNet's per-channel mean and std in [0, 1] units: the default of image folders.
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@dataclass
class ArrayDataset:
    """A labelled image dataset held in memory.

    Args:
        images: uint8 tensor ``(N, C, H, W)``, pixel values 0..255.
        labels: int64 tensor ``(N,)``, each in ``[0, len(classes))``.
        classes: class names; ``classes[k]`` is the name of label ``k``.
        mean: per-channel mean in [0, 1] units, for normalisation.
        std: per-channel standard deviation in [0, 1] units, for normalisation.
        name: registry name of the dataset (e.g. ``"cifar10"``).
        split: which split this is (e.g. ``"train"``).
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str = ""
    split: str = ""

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(
                f"images must be a uint8 tensor (N, C, H, W), got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.dim() != 1:
            raise ValueError(
                f"labels must be an int64 tensor (N,), got {self.labels.dtype} {tuple(self.labels.shape)}"
            )
        if len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        if len(self.mean) != self.in_chans or len(self.std) != self.in_chans:
            raise ValueError(
                f"mean and std need one value per channel ({self.in_chans}), "
                f"got mean={self.mean}, std={self.std}"
            )
        check_label_range(self.labels, len(self.classes), f"{self.name} {self.split}".strip() or "labels")
        self.mean = tuple(float(m) for m in self.mean)
        self.std = tuple(float(s) for s in self.std)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __repr__(self) -> str:
        return (
            f"ArrayDataset(name={self.name!r}, split={self.split!r}, images={tuple(self.images.shape)}, "
            f"num_classes={self.num_classes})"
        )

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """One ``(image uint8 (C, H, W), label)`` pair."""
        return self.images[index], int(self.labels[index])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_chans(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` in pixels."""
        return (self.images.shape[2], self.images.shape[3])


@dataclass
class FolderDataset:
    """Images in class folders, decoded lazily (with Pillow) and converted to RGB.

    Args:
        paths: one file per sample.
        labels: int64 tensor ``(N,)``, each in ``[0, len(classes))``.
        classes: class names (the folder names, sorted); ``classes[k]`` is the name of label ``k``.
        mean: per-channel mean in [0, 1] units (ImageNet's by default).
        std: per-channel standard deviation in [0, 1] units.
        name: registry name (``"imagefolder"``).
        split: which split this is (``"train"``, ``"val"`` or ``"test"``).
        root: the split's folder.
    """

    paths: list[Path]
    labels: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...] = IMAGENET_STATS[0]
    std: tuple[float, ...] = IMAGENET_STATS[1]
    name: str = "imagefolder"
    split: str = ""
    root: Path | None = field(default=None)

    def __post_init__(self) -> None:
        if len(self.paths) != len(self.labels):
            raise ValueError(f"{len(self.paths)} paths but {len(self.labels)} labels")
        check_label_range(self.labels, len(self.classes), str(self.root or "labels"))

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return (
            f"FolderDataset(name={self.name!r}, split={self.split!r}, root={str(self.root)!r}, "
            f"images={len(self)}, num_classes={self.num_classes})"
        )

    def __getitem__(self, index: int) -> tuple[Any, int]:
        """One ``(PIL.Image in RGB, label)`` pair."""
        return self.load(index), int(self.labels[index])

    def load(self, index: int) -> Any:
        """Decode image ``index`` with Pillow and convert it to RGB; DatasetError if it cannot be read."""
        image_module = _require_pillow()
        path = self.paths[index]
        try:
            with image_module.open(path) as img:
                return img.convert("RGB")
        except (OSError, image_module.DecompressionBombError) as err:
            raise DatasetError(f"{path}: cannot decode image ({err})") from err

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_chans(self) -> int:
        return 3

    @property
    def image_size(self) -> None:
        """Images differ in size; the transform fixes it."""
        return None


@dataclass
class SignalDataset:
    """A labelled set of multichannel time series (e.g. EEG trials) held in memory, already standardised.

    Unlike :class:`ArrayDataset`, the loader does not normalise these: ``mean`` and ``std`` record the
    per-channel statistics (in the recording's own units) that were already subtracted and divided out.

    Args:
        signals: float32 tensor ``(N, C, L)``: ``N`` trials, ``C`` channels (electrodes), ``L`` time points.
        labels: int64 tensor ``(N,)``, each in ``[0, len(classes))``.
        classes: class names; ``classes[k]`` is the name of label ``k``.
        name: registry name of the dataset (e.g. ``"eeg-blink"``).
        split: which split this is (``"train"`` or ``"test"``).
        sampling_rate: samples per second (Hz), or None where unknown.
        mean: per-channel mean that was subtracted (raw units; empty if none was), ``C`` values.
        std: per-channel standard deviation that was divided out (raw units; empty if none was).
    """

    signals: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    name: str = ""
    split: str = ""
    sampling_rate: float | None = None
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.signals, torch.Tensor) or self.signals.dtype != torch.float32:
            raise ValueError(f"signals must be a float32 tensor (N, C, L), got {_describe(self.signals)}")
        if self.signals.dim() != 3:
            raise ValueError(f"signals must be a float32 tensor (N, C, L), got {_describe(self.signals)}")
        labels = self.labels
        if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.dim() != 1:
            raise ValueError(f"labels must be an int64 tensor (N,), got {_describe(self.labels)}")
        if len(self.labels) != len(self.signals):
            raise ValueError(f"{len(self.signals)} signals but {len(self.labels)} labels")
        if self.sampling_rate is not None:
            rate = self.sampling_rate
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate < float("inf"):
                raise ValueError(f"sampling_rate must be a positive number of Hz or None, got {rate!r}")
            self.sampling_rate = float(rate)
        for stat in ("mean", "std"):
            values = tuple(float(v) for v in getattr(self, stat))
            if values and len(values) != self.in_chans:
                raise ValueError(
                    f"{stat} needs one value per channel ({self.in_chans}) or none, got {getattr(self, stat)}"
                )
            setattr(self, stat, values)
        check_label_range(self.labels, len(self.classes), f"{self.name} {self.split}".strip() or "labels")

    def __len__(self) -> int:
        return self.signals.shape[0]

    def __repr__(self) -> str:
        rate = "unknown" if self.sampling_rate is None else f"{self.sampling_rate:g} Hz"
        return (
            f"SignalDataset(name={self.name!r}, split={self.split!r}, signals={tuple(self.signals.shape)}, "
            f"num_classes={self.num_classes}, sampling_rate={rate})"
        )

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """One ``(signal float32 (C, L), label)`` pair."""
        return self.signals[index], int(self.labels[index])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_chans(self) -> int:
        """``C``: the channels (electrodes)."""
        return self.signals.shape[1]

    @property
    def signal_length(self) -> int:
        """``L``: time points per trial."""
        return self.signals.shape[2]

    @property
    def image_size(self) -> None:
        """Signals are not images."""
        return None


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"{value.dtype} {tuple(value.shape)}"
    return type(value).__name__


def _require_pillow() -> Any:
    try:
        from PIL import Image
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("image folders need Pillow: pip install pillow") from err
    return Image


def check_label_range(labels: torch.Tensor, num_classes: int, where: str) -> None:
    if len(labels) == 0:
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise DatasetError(
            f"{where}: labels must lie in [0, {num_classes - 1}], found values in [{low}, {high}]"
        )
