"""Writers of small files in each dataset's real on-disk format, for the data room's tests."""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
STL_CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """An IDX file: big-endian int32 magic, big-endian int32 dims, then the uint8 data."""
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_gz(path: Path, data: bytes) -> Path:
    with gzip.open(path, "wb") as f:
        f.write(data)
    return path


def fmnist_arrays(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    return images, labels


def write_fashion_mnist(directory: Path, n_train: int = 20, n_test: int = 10) -> dict[str, tuple]:
    """The four IDX .gz files; returns {split: (images (N, 28, 28), labels (N,))}."""
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = fmnist_arrays(n, seed=n)
        image_file, label_file = FMNIST_FILES[split]
        write_gz(directory / image_file, idx_bytes(images, 2051))
        write_gz(directory / label_file, idx_bytes(labels, 2049))
        out[split] = (images, labels)
    return out


def cifar_batch(images: np.ndarray, labels: list[int], label_key: bytes) -> dict[bytes, object]:
    """A batch dict as in the official files: b'data' uint8 (n, 3072) planes R, G, B, row-major."""
    return {
        b"batch_label": b"fake batch",
        label_key: labels,
        b"data": images.reshape(len(images), -1),
        b"filenames": [f"img_{i}.png".encode() for i in range(len(images))],
    }


def write_pickle(path: Path, obj: object) -> Path:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)
    return path


def write_cifar10(directory: Path, per_batch: int = 4, n_test: int = 6) -> dict[str, tuple]:
    """cifar-10-batches-py/ with 5 train batches of ``per_batch`` images; returns {split: (x, y)}."""
    base = directory / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    names = [
        b"airplane",
        b"automobile",
        b"bird",
        b"cat",
        b"deer",
        b"dog",
        b"frog",
        b"horse",
        b"ship",
        b"truck",
    ]
    write_pickle(base / "batches.meta", {b"label_names": names, b"num_cases_per_batch": per_batch})
    xs, ys = [], []
    for i in range(1, 6):
        x = rng.integers(0, 256, size=(per_batch, 3, 32, 32), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, size=per_batch)]
        write_pickle(base / f"data_batch_{i}", cifar_batch(x, y, b"labels"))
        xs.append(x)
        ys += y
    x_test = rng.integers(0, 256, size=(n_test, 3, 32, 32), dtype=np.uint8)
    y_test = [int(v) for v in rng.integers(0, 10, size=n_test)]
    write_pickle(base / "test_batch", cifar_batch(x_test, y_test, b"labels"))
    return {"train": (np.concatenate(xs), np.array(ys)), "test": (x_test, np.array(y_test))}


def write_cifar100(directory: Path, n_train: int = 8, n_test: int = 4) -> dict[str, tuple]:
    base = directory / "cifar-100-python"
    base.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    fine = [f"fine_{k}".encode() for k in range(100)]
    coarse = [f"coarse_{k}".encode() for k in range(20)]
    write_pickle(base / "meta", {b"fine_label_names": fine, b"coarse_label_names": coarse})
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 100, size=n)]
        batch = cifar_batch(x, y, b"fine_labels")
        batch[b"coarse_labels"] = [v // 5 for v in y]
        write_pickle(base / split, batch)
        out[split] = (x, np.array(y))
    return out


def stl_bytes(images: np.ndarray) -> bytes:
    """images (N, 3, 96, 96) in (row, column) order → STL-10's column-major byte layout."""
    return np.ascontiguousarray(images.transpose(0, 1, 3, 2)).tobytes()


def write_stl10(directory: Path, n_train: int = 10, n_test: int = 16, seed: int = 3) -> dict[str, tuple]:
    """stl10_binary/ with labels 1..10 on disk; returns {split: (images (N,3,96,96), labels 0..9)}."""
    base = directory / "stl10_binary"
    base.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, size=(n, 3, 96, 96), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        (base / f"{split}_X.bin").write_bytes(stl_bytes(x))
        (base / f"{split}_y.bin").write_bytes((y + 1).tobytes())
        out[split] = (x, y.astype(np.int64))
    (base / "class_names.txt").write_text("\n".join(STL_CLASSES) + "\n")
    return out


def write_imagefolder(directory: Path, split: str = "train", per_class: int = 3, size=(20, 14)) -> list[str]:
    """directory/<split>/<class>/img_k.png with a solid colour per class; returns the class names.

    Skips the calling test where Pillow (an optional dependency) is not installed.
    """
    image = pytest.importorskip("PIL.Image")

    classes = ["cat", "dog", "zebra"]
    colours = {"cat": (255, 0, 0), "dog": (0, 255, 0), "zebra": (0, 0, 255)}
    for name in classes:
        folder = directory / split / name
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            w, h = size[0] + 2 * k, size[1] + k
            image.new("RGB", (w, h), colours[name]).save(folder / f"img_{k}.png")
    return classes


def tar_gz_bytes(files: dict[str, bytes]) -> bytes:
    """A .tar.gz holding ``files`` (name → content)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def ts_text(values: np.ndarray, labels: list[str], classes: list[str], problem: str = "Toy") -> str:
    """A UEA/UCR .ts file of ``values (N, C, L)``: header, @data, then 'v,v,...:v,v,...:label' per case."""
    header = [
        f"# {problem}, written by the tests",
        f"@problemName {problem}",
        "@timeStamps false",
        "@missing false",
        f"@univariate {'true' if values.shape[1] == 1 else 'false'}",
        f"@dimensions {values.shape[1]}",
        "@equalLength true",
        f"@seriesLength {values.shape[2]}",
        f"@classLabel true {' '.join(classes)}",
        "@data",
    ]
    cases = [
        ":".join(",".join(repr(float(v)) for v in dim) for dim in case) + f":{label}"
        for case, label in zip(values, labels, strict=True)
    ]
    return "\n".join(header + cases) + "\n"


def write_ts_pair(directory: Path, problem: str, train: tuple, test: tuple, classes: list[str]) -> None:
    """``<problem>_TRAIN.ts`` and ``<problem>_TEST.ts`` in ``directory``; ``train``/``test`` are
    ``(values (N, C, L), labels as class names)``."""
    directory.mkdir(parents=True, exist_ok=True)
    for split, (values, labels) in (("TRAIN", train), ("TEST", test)):
        (directory / f"{problem}_{split}.ts").write_text(ts_text(values, labels, classes, problem))
