"""CIFAR-10 and CIFAR-100 from the official python pickle batches, read without running their code."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from plugattn._checks import check_choice
from plugattn.data.records import ArrayDataset, DatasetError, DatasetNotFoundError, check_label_range

__all__ = ["CIFAR_LAYOUT", "CifarLayout", "cifar_files", "load_cifar"]

# Per-channel mean and std in [0, 1] units of each training set. CIFAR-10 uses the true per-pixel std
# (0.247, 0.243, 0.261), not the often-copied (0.2023, ...), which is the std of per-image means.
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR batches (dicts of bytes, lists and numpy arrays) and nothing else.

    ``pickle.load`` on a downloaded file would run whatever code the file names; this one only lets numpy's
    array reconstruction through.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes bytes at protocol 2 (re-saved batches)
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays are allowed)")
        return super().find_class(module, name)


def _load_pickle(path: Path) -> dict[bytes, Any]:
    try:
        with open(path, "rb") as f:
            obj = _NumpyOnlyUnpickler(f, encoding="bytes").load()
    except FileNotFoundError as err:
        raise DatasetNotFoundError(f"{path}: file not found") from err
    except Exception as err:  # UnpicklingError, EOFError, ValueError, ... all mean the same to the user
        raise DatasetError(f"{path}: not a readable CIFAR pickle ({type(err).__name__}: {err})") from err
    if not isinstance(obj, dict):
        raise DatasetError(f"{path}: expected a dict in the pickle, got {type(obj).__name__}")
    return obj


def _get_key(obj: dict[bytes, Any], key: bytes, path: Path) -> Any:
    if key not in obj:
        found = ", ".join(repr(k) for k in obj)
        raise DatasetError(f"{path}: missing key {key!r} (found {found})")
    return obj[key]


@dataclass(frozen=True)
class CifarLayout:
    """Where one CIFAR variant keeps its batches, and under which keys."""

    folder: str  # the folder inside the dataset directory
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str  # holds the class names
    label_key: bytes
    names_key: bytes
    stats: tuple[tuple[float, ...], tuple[float, ...]]  # per-channel (mean, std) in [0, 1] units


CIFAR_LAYOUT = {
    "cifar10": CifarLayout(
        folder="cifar-10-batches-py",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_files=("test_batch",),
        meta_file="batches.meta",
        label_key=b"labels",
        names_key=b"label_names",
        stats=CIFAR10_STATS,
    ),
    "cifar100": CifarLayout(
        folder="cifar-100-python",
        train_files=("train",),
        test_files=("test",),
        meta_file="meta",
        label_key=b"fine_labels",
        names_key=b"fine_label_names",
        stats=CIFAR100_STATS,
    ),
}


def cifar_files(name: str, split: str) -> list[str]:
    """Paths (relative to the dataset directory) that ``split`` of CIFAR ``name`` reads."""
    layout = CIFAR_LAYOUT[name]
    files = layout.train_files if split == "train" else layout.test_files
    return [f"{layout.folder}/{f}" for f in (*files, layout.meta_file)]


def load_cifar(directory: str | Path, split: str, *, name: str = "cifar10") -> ArrayDataset:
    """CIFAR-10 or CIFAR-100 (fine labels) from the official pickle batches: ``(N, 3, 32, 32)`` RGB.

    Each batch holds ``b"data"``, uint8 ``(n, 3072)`` — the red, green and blue 32x32 planes one after the
    other, rows in order — and the labels as a list of ints.
    """
    check_choice("name", name, tuple(CIFAR_LAYOUT))
    check_choice("split", split, ("train", "test"))
    layout = CIFAR_LAYOUT[name]
    meta_path = Path(directory) / layout.folder / layout.meta_file
    classes = [
        n.decode("utf-8") if isinstance(n, bytes) else str(n)
        for n in _get_key(_load_pickle(meta_path), layout.names_key, meta_path)
    ]
    images, labels = [], []
    for rel in cifar_files(name, split)[:-1]:
        path = Path(directory) / rel
        batch = _load_pickle(path)
        data = np.asarray(_get_key(batch, b"data", path))
        batch_labels = np.asarray(_get_key(batch, layout.label_key, path))
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise DatasetError(
                f"{path}: b'data' must be uint8 (n, 3072), got {data.dtype} {data.shape}"
                " (a wrong byte count or a corrupt file)"
            )
        if batch_labels.shape != (data.shape[0],):
            raise DatasetError(f"{path}: {batch_labels.size} labels for {data.shape[0]} images")
        labels_t = torch.from_numpy(batch_labels.astype(np.int64))
        check_label_range(labels_t, len(classes), str(path))
        images.append(torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()))  # (n, 3, 32, 32): planes R, G, B
        labels.append(labels_t)
    return ArrayDataset(
        images=torch.cat(images),
        labels=torch.cat(labels),
        classes=classes,
        mean=layout.stats[0],
        std=layout.stats[1],
        name=name,
        split=split,
    )
