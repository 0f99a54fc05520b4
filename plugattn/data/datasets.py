"""Dataset containers and the readers of each on-disk format.

Every reader checks what it reads — headers, byte counts, label ranges — and raises :class:`DatasetError`
naming the file and what is wrong, so a truncated download never becomes a silently smaller dataset.

In-memory datasets (Fashion-MNIST, CIFAR-10/100, STL-10, synthetic) are :class:`ArrayDataset`: one uint8
tensor of images and one int64 tensor of labels, so the loader slices batches and augments them as whole
tensors. Image folders are :class:`FolderDataset`: paths decoded lazily with Pillow in a worker pool.
"""

from __future__ import annotations

import gzip
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from plugattn._checks import check_choice, check_int
from plugattn.data._seed import derive_seed

__all__ = [
    "IMAGE_EXTENSIONS",
    "ArrayDataset",
    "DatasetError",
    "DatasetNotFoundError",
    "FolderDataset",
    "load_cifar",
    "load_fashion_mnist",
    "load_imagefolder",
    "load_stl10",
    "make_synthetic",
    "read_idx",
]


class DatasetError(ValueError):
    """A dataset file is missing, truncated or corrupt, or its contents are out of range."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """The dataset's files are not where they were looked for (caught as ValueError or FileNotFoundError)."""


# Per-channel mean and std in [0, 1] units, the values published with (or computed once on) each training
# set. CIFAR-10 uses the true per-pixel std (0.247, 0.243, 0.261), not the often-copied (0.2023, ...), which
# is the std of per-image means.
FASHION_MNIST_STATS = ((0.2860,), (0.3530,))
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
STL10_STATS = ((0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713))
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

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

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".webp")


# --------------------------------------------------------------------------------------------------------
# Containers
# --------------------------------------------------------------------------------------------------------
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
        _check_label_range(self.labels, len(self.classes), f"{self.name} {self.split}".strip() or "labels")
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
        _check_label_range(self.labels, len(self.classes), str(self.root or "labels"))

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


def _require_pillow() -> Any:
    try:
        from PIL import Image
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("image folders need Pillow: pip install pillow") from err
    return Image


def _check_label_range(labels: torch.Tensor, num_classes: int, where: str) -> None:
    if len(labels) == 0:
        return
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise DatasetError(
            f"{where}: labels must lie in [0, {num_classes - 1}], found values in [{low}, {high}]"
        )


# --------------------------------------------------------------------------------------------------------
# Fashion-MNIST: IDX files
# --------------------------------------------------------------------------------------------------------
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
    _check_label_range(labels_t, 10, str(label_file))
    return ArrayDataset(
        images=torch.from_numpy(images.copy()).unsqueeze(1),  # (N, 1, 28, 28)
        labels=labels_t,
        classes=list(FASHION_MNIST_CLASSES),
        mean=FASHION_MNIST_STATS[0],
        std=FASHION_MNIST_STATS[1],
        name="fashion-mnist",
        split=split,
    )


# --------------------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100: python pickle batches
# --------------------------------------------------------------------------------------------------------
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


CIFAR_LAYOUT = {
    # name: (folder, train files, test files, meta file, label key, class-name key, stats)
    "cifar10": (
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",),
        "batches.meta",
        b"labels",
        b"label_names",
        CIFAR10_STATS,
    ),
    "cifar100": (
        "cifar-100-python",
        ("train",),
        ("test",),
        "meta",
        b"fine_labels",
        b"fine_label_names",
        CIFAR100_STATS,
    ),
}


def cifar_files(name: str, split: str) -> list[str]:
    """Paths (relative to the dataset directory) that ``split`` of CIFAR ``name`` reads."""
    folder, train, test, meta, *_ = CIFAR_LAYOUT[name]
    return [f"{folder}/{f}" for f in (train if split == "train" else test) + (meta,)]


def load_cifar(directory: str | Path, split: str, *, name: str = "cifar10") -> ArrayDataset:
    """CIFAR-10 or CIFAR-100 (fine labels) from the official pickle batches: ``(N, 3, 32, 32)`` RGB.

    Each batch holds ``b"data"``, uint8 ``(n, 3072)`` — the red, green and blue 32x32 planes one after the
    other, rows in order — and the labels as a list of ints.
    """
    check_choice("name", name, tuple(CIFAR_LAYOUT))
    check_choice("split", split, ("train", "test"))
    folder, _, _, meta_name, label_key, names_key, stats = CIFAR_LAYOUT[name]
    base = Path(directory) / folder
    meta_path = base / meta_name
    classes = [
        n.decode("utf-8") if isinstance(n, bytes) else str(n)
        for n in _get_key(_load_pickle(meta_path), names_key, meta_path)
    ]
    images, labels = [], []
    for rel in cifar_files(name, split)[:-1]:
        path = Path(directory) / rel
        batch = _load_pickle(path)
        data = np.asarray(_get_key(batch, b"data", path))
        batch_labels = np.asarray(_get_key(batch, label_key, path))
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise DatasetError(
                f"{path}: b'data' must be uint8 (n, 3072), got {data.dtype} {data.shape}"
                " (a wrong byte count or a corrupt file)"
            )
        if batch_labels.shape != (data.shape[0],):
            raise DatasetError(f"{path}: {batch_labels.size} labels for {data.shape[0]} images")
        labels_t = torch.from_numpy(batch_labels.astype(np.int64))
        _check_label_range(labels_t, len(classes), str(path))
        images.append(torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()))  # (n, 3, 32, 32): planes R, G, B
        labels.append(labels_t)
    return ArrayDataset(
        images=torch.cat(images),
        labels=torch.cat(labels),
        classes=classes,
        mean=stats[0],
        std=stats[1],
        name=name,
        split=split,
    )


# --------------------------------------------------------------------------------------------------------
# STL-10: binary files
# --------------------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------------------
# Synthetic
# --------------------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------------------
# Image folders
# --------------------------------------------------------------------------------------------------------
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
    split_dir = Path(directory) / split
    if not split_dir.is_dir():
        present = (
            sorted(p.name for p in Path(directory).iterdir() if p.is_dir())
            if Path(directory).is_dir()
            else []
        )
        raise DatasetNotFoundError(
            f"{split_dir}: no such folder; an image folder needs "
            f"{directory}/{split}/<class_name>/<image files>"
            f" (sub-folders found: {present or 'none'})"
        )
    folders = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DatasetError(
            f"{split_dir}: no class sub-folders; expected {split_dir}/<class_name>/<image files>"
        )
    if classes is None:
        classes = folders
    else:
        classes = list(classes)
        unknown = sorted(set(folders) - set(classes))
        if unknown:
            raise DatasetError(f"{split_dir}: class folders {unknown} are not among the given classes")
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
    if len(mean) != 3 or len(std) != 3:
        raise ValueError(f"mean and std need 3 values (RGB), got mean={tuple(mean)}, std={tuple(std)}")
    return FolderDataset(
        paths=paths,
        labels=torch.tensor(labels, dtype=torch.int64),
        classes=list(classes),
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        split=split,
        root=split_dir,
    )
