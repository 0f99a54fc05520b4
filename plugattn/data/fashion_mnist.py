"""Fashion-MNIST from its four IDX files (the MNIST format: a big-endian header, then uint8 data)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from plugattn._checks import check_choice
from plugattn.data.records import ArrayDataset, DatasetError, DatasetNotFoundError, check_label_range

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_FILES",
    "FASHION_MNIST_STATS",
    "load_fashion_mnist",
    "read_idx",
]

# Per-channel mean and std in [0, 1] units, computed once on the training set.
FASHION_MNIST_STATS = ((0.2860,), (0.3530,))

FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


_IDX_MAGIC = {2049: 1, 2051: 3}  # labels: 1 dimension, images: 3 dimensions (N, rows, cols)


def read_idx(path: str | Path, *, expected_magic: int) -> np.ndarray:
    """Read a (gzipped) IDX file of unsigned bytes, checking the header against the byte count.

    The IDX header is a big-endian int32 magic number (``0x0000080D``: type 0x08 = uint8, D dimensions),
    then D big-endian int32 sizes; 2049 is a label file ``(N,)``, 2051 an image file ``(N, rows, cols)``.
    """
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
    except FileNotFoundError as err:
        raise DatasetNotFoundError(f"{path}: file not found") from err
    except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError; a cut-off gzip stream is EOFError
        raise DatasetError(f"{path}: corrupt or truncated gzip file ({err})") from err
    if len(data) < 4:
        raise DatasetError(f"{path}: too short to be an IDX file ({len(data)} bytes)")
    magic = int.from_bytes(data[:4], "big")
    if magic != expected_magic:
        raise DatasetError(f"{path}: wrong IDX magic number {magic}, expected {expected_magic}")
    ndim = _IDX_MAGIC[magic]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{path}: truncated IDX header ({len(data)} bytes, need {header})")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        raise DatasetError(
            f"{path}: size mismatch: header says dims {dims} ({expected} bytes) "
            f"but the file has {len(data)} bytes"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def load_fashion_mnist(directory: str | Path, split: str) -> ArrayDataset:
    """Fashion-MNIST from its four IDX ``.gz`` files in ``directory``: ``(N, 1, 28, 28)`` grey images."""
    check_choice("split", split, tuple(FASHION_MNIST_FILES))
    directory = Path(directory)
    image_file, label_file = (directory / f for f in FASHION_MNIST_FILES[split])
    images = read_idx(image_file, expected_magic=2051)  # (N, 28, 28)
    labels = read_idx(label_file, expected_magic=2049)  # (N,)
    if images.shape[1:] != (28, 28):
        raise DatasetError(f"{image_file}: images must be 28x28, got {images.shape[1]}x{images.shape[2]}")
    if len(images) != len(labels):
        raise DatasetError(
            f"{label_file}: {len(labels)} labels for {len(images)} images in {image_file.name}"
        )
    labels_t = torch.from_numpy(labels.astype(np.int64))
    check_label_range(labels_t, 10, str(label_file))
    return ArrayDataset(
        images=torch.from_numpy(images.copy()).unsqueeze(1),  # (N, 1, 28, 28)
        labels=labels_t,
        classes=list(FASHION_MNIST_CLASSES),
        mean=FASHION_MNIST_STATS[0],
        std=FASHION_MNIST_STATS[1],
        name="fashion-mnist",
        split=split,
    )
