"""Images in class folders (the ImageNet layout), decoded lazily with Pillow."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from plugattn._checks import check_choice
from plugattn.data.records import IMAGENET_STATS, DatasetError, DatasetNotFoundError, FolderDataset

__all__ = ["IMAGE_EXTENSIONS", "load_imagefolder"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".webp")


def load_imagefolder(
    directory: str | Path,
    split: str,
    *,
    classes: Sequence[str] | None = None,
    mean: Sequence[float] = IMAGENET_STATS[0],
    std: Sequence[float] = IMAGENET_STATS[1],
) -> FolderDataset:
    """Images laid out as ``directory/<split>/<class_name>/**/*.jpg`` (ImageNet layout).

    Args:
        directory: the dataset folder, holding ``train/``, ``val/`` and/or ``test/``.
        split: ``"train"``, ``"val"`` or ``"test"`` — the sub-folder read.
        classes: the class names in label order; default: the sub-folder names, sorted. Pass the training
            split's ``classes`` when reading a split that may lack a class, so labels keep their meaning.
        mean: per-channel mean in [0, 1] units (default ImageNet's).
        std: per-channel standard deviation in [0, 1] units (default ImageNet's).
    """
    check_choice("split", split, ("train", "val", "test"))
    split_dir = _split_dir(Path(directory), split)
    classes = _class_list(split_dir, classes)
    paths, labels = _images(split_dir, classes)
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std need 3 values (RGB), got mean={tuple(mean)}, std={tuple(std)}")
    return FolderDataset(
        paths=paths,
        labels=labels,
        classes=list(classes),
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        split=split,
        root=split_dir,
    )


def _split_dir(directory: Path, split: str) -> Path:
    split_dir = directory / split
    if not split_dir.is_dir():
        present = sorted(p.name for p in directory.iterdir() if p.is_dir()) if directory.is_dir() else []
        raise DatasetNotFoundError(
            f"{split_dir}: no such folder; an image folder needs "
            f"{directory}/{split}/<class_name>/<image files>"
            f" (sub-folders found: {present or 'none'})"
        )
    return split_dir


def _class_list(split_dir: Path, classes: Sequence[str] | None) -> list[str]:
    """The class names in label order: ``classes`` if given (every class folder must be among them),
    else the class folders, sorted."""
    folders = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DatasetError(
            f"{split_dir}: no class sub-folders; expected {split_dir}/<class_name>/<image files>"
        )
    if classes is None:
        return folders
    unknown = sorted(set(folders) - set(classes))
    if unknown:
        raise DatasetError(f"{split_dir}: class folders {unknown} are not among the given classes")
    return list(classes)


def _images(split_dir: Path, classes: list[str]) -> tuple[list[Path], torch.Tensor]:
    """Every image file under each class folder (a class may have no folder), and its label."""
    paths: list[Path] = []
    labels: list[int] = []
    empty = []
    for label, name in enumerate(classes):
        class_dir = split_dir / name
        files = (
            sorted(p for p in class_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if class_dir.is_dir()
            else []
        )
        if class_dir.is_dir() and not files:
            empty.append(name)
        paths += files
        labels += [label] * len(files)
    if empty:
        raise DatasetError(
            f"{split_dir}: no images in class folder(s) {empty} "
            f"(extensions read: {', '.join(IMAGE_EXTENSIONS)})"
        )
    return paths, torch.tensor(labels, dtype=torch.int64)
