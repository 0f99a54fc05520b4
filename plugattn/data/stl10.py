"""STL-10 from its binary files (column-major 96x96 RGB images), with the HAM paper's re-split."""

from __future__ import annotations

from pathlib import Path

import torch

from plugattn._checks import check_choice, check_int
from plugattn.data.records import ArrayDataset, DatasetError, DatasetNotFoundError

__all__ = [
    "STL10_FOLDER",
    "STL10_SPLIT_MODES",
    "STL10_STATS",
    "ham_split_indices",
    "load_stl10",
    "stl10_files",
]

# Per-channel mean and std in [0, 1] units of the labelled training images.
STL10_STATS = ((0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713))

STL10_FOLDER = "stl10_binary"
STL10_SPLIT_MODES = ("standard", "ham")
_STL_PIXELS = 3 * 96 * 96  # bytes per image


def stl10_files(split: str, split_mode: str) -> list[str]:
    """Paths (relative to the dataset directory) that ``split`` of STL-10 reads in ``split_mode``."""
    parts = ("train", "test") if split_mode == "ham" else (split,)
    files = [f"{STL10_FOLDER}/{p}_{s}.bin" for p in parts for s in ("X", "y")]
    return [*files, f"{STL10_FOLDER}/class_names.txt"]


def _read_stl_part(base: Path, part: str) -> tuple[torch.Tensor, torch.Tensor]:
    x_path, y_path = base / f"{part}_X.bin", base / f"{part}_y.bin"
    x = _read_bytes(x_path)
    y = _read_bytes(y_path)
    if len(x) == 0:
        raise DatasetError(f"{x_path}: empty file (expected {_STL_PIXELS} bytes per image)")
    if len(x) % _STL_PIXELS != 0:
        raise DatasetError(
            f"{x_path}: wrong byte count {len(x)}: not a multiple of 3*96*96 = {_STL_PIXELS} "
            "(truncated file?)"
        )
    n = len(x) // _STL_PIXELS
    if len(y) != n:
        raise DatasetError(f"{y_path}: {len(y)} labels for {n} images in {x_path.name} (truncated file?)")
    # Each image is 3 planes of 96x96 stored column-major (Fortran order), so the last two axes come out as
    # (column, row): swap them to get (row, column).
    images = torch.frombuffer(bytearray(x), dtype=torch.uint8).reshape(n, 3, 96, 96)  # (N, 3, W, H)
    images = images.transpose(2, 3).contiguous()  # (N, 3, H, W)
    labels = torch.frombuffer(bytearray(y), dtype=torch.uint8).to(torch.int64)  # (N,), 1..10 on disk
    if n and (int(labels.min()) < 1 or int(labels.max()) > 10):
        raise DatasetError(
            f"{y_path}: labels must lie in [1, 10], "
            f"found values in [{int(labels.min())}, {int(labels.max())}]"
        )
    return images, labels - 1


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as err:
        raise DatasetNotFoundError(f"{path}: file not found") from err


def ham_split_indices(num_labelled: int, split_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The HAM paper's 7:3 re-split of STL-10's labelled images (train then test pooled, in file order).

    ``perm = torch.randperm(num_labelled, generator=torch.Generator().manual_seed(split_seed))``; the first
    ``num_labelled * 7 // 10`` entries (9,100 of 13,000) are the training indices and the rest (3,900) the
    test indices, each sorted ascending. The split is random, not stratified: with 1,300 images per class
    the class counts differ from 910/390 only by sampling noise.
    """
    perm = torch.randperm(num_labelled, generator=torch.Generator().manual_seed(split_seed))
    n_train = num_labelled * 7 // 10
    return perm[:n_train].sort().values, perm[n_train:].sort().values


def load_stl10(
    directory: str | Path, split: str, *, split_mode: str = "standard", split_seed: int = 0
) -> ArrayDataset:
    """STL-10's labelled images from ``stl10_binary/``: ``(N, 3, 96, 96)`` RGB, labels 0..9.

    Args:
        directory: the folder holding ``stl10_binary/``.
        split: ``"train"`` or ``"test"``.
        split_mode: ``"standard"`` (5,000 train / 8,000 test, as distributed) or ``"ham"`` (the HAM paper's
            seeded 7:3 re-split of all 13,000 labelled images: 9,100 / 3,900; see :func:`ham_split_indices`).
        split_seed: seed of the ``"ham"`` re-split (default 0).
    """
    check_choice("split", split, ("train", "test"))
    check_choice("split_mode", split_mode, STL10_SPLIT_MODES)
    check_int("split_seed", split_seed, minimum=0)
    base = Path(directory) / STL10_FOLDER
    names_path = base / "class_names.txt"
    classes = [line.strip() for line in _read_bytes(names_path).decode("utf-8").splitlines() if line.strip()]
    if len(classes) != 10:
        raise DatasetError(f"{names_path}: expected 10 class names, found {len(classes)}")
    if split_mode == "standard":
        images, labels = _read_stl_part(base, split)
    else:
        train_x, train_y = _read_stl_part(base, "train")
        test_x, test_y = _read_stl_part(base, "test")
        pooled_x, pooled_y = torch.cat([train_x, test_x]), torch.cat([train_y, test_y])  # (13000, 3, 96, 96)
        train_idx, test_idx = ham_split_indices(len(pooled_y), split_seed)
        idx = train_idx if split == "train" else test_idx
        images, labels = pooled_x[idx], pooled_y[idx]
    return ArrayDataset(
        images=images,
        labels=labels,
        classes=classes,
        mean=STL10_STATS[0],
        std=STL10_STATS[1],
        name="stl10",
        split=split,
    )
