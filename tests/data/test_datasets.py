"""Datasets read from small files in each real on-disk format; bad files give errors naming the file."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from plugattn.data import ArrayDataset, DatasetError, FolderDataset, create_dataset, list_datasets
from plugattn.data import registry as reg
from plugattn.data.records import DatasetNotFoundError
from plugattn.data.stl10 import ham_split_indices
from plugattn.data.synthetic import make_synthetic
from tests.data import formats as fmt

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


# ---------------------------------------------------------------------------------------- registry
def test_list_datasets():
    assert list_datasets() == [
        "cifar10",
        "cifar100",
        "eeg-blink",
        "eeg-scp1",
        "fashion-mnist",
        "imagefolder",
        "stl10",
        "synthetic",
        "ts",
    ]


def test_unknown_name_lists_known_ones():
    with pytest.raises(
        ValueError,
        match=r"dataset must be one of cifar10, cifar100, eeg-blink, eeg-scp1, fashion-mnist, .*; "
        r"got 'mnist'",
    ):
        create_dataset("mnist", "train")


def test_unknown_split_and_option():
    with pytest.raises(ValueError, match=r"split must be one of 'train', 'test'; got 'val'"):
        create_dataset("cifar10", "val")
    with pytest.raises(
        ValueError, match=r"unknown option\(s\) \['pad'\] for dataset 'stl10'; allowed: split_mode"
    ):
        create_dataset("stl10", "train", pad=4)


def test_duplicate_registration_is_an_error():
    with pytest.raises(ValueError, match="'cifar10' is already registered"):
        reg.register_dataset(reg.dataset_entry("cifar10"))


# ---------------------------------------------------------------------------------------- fashion-mnist
def test_fashion_mnist_reads_idx(tmp_path):
    arrays = fmt.write_fashion_mnist(tmp_path)
    for split in ("train", "test"):
        ds = create_dataset("fashion-mnist", split, root=tmp_path)
        images, labels = arrays[split]
        assert isinstance(ds, ArrayDataset)
        assert ds.images.shape == (len(images), 1, 28, 28) and ds.images.dtype == torch.uint8
        assert ds.labels.dtype == torch.int64
        assert torch.equal(ds.images[:, 0], torch.from_numpy(images))  # rows stay rows
        assert ds.labels.tolist() == labels.tolist()
        assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot" and ds.num_classes == 10
        assert (ds.in_chans, ds.image_size, ds.split, ds.name) == (1, (28, 28), split, "fashion-mnist")
        assert ds.mean == (0.2860,) and ds.std == (0.3530,)
    assert len(create_dataset("fashion-mnist", "train", root=tmp_path)) == 20


def _write_fmnist_test(tmp_path, images_bytes=None, labels_bytes=None):
    fmt.write_fashion_mnist(tmp_path)
    if images_bytes is not None:
        fmt.write_gz(tmp_path / "t10k-images-idx3-ubyte.gz", images_bytes)
    if labels_bytes is not None:
        fmt.write_gz(tmp_path / "t10k-labels-idx1-ubyte.gz", labels_bytes)


def test_fashion_mnist_bad_files(tmp_path):
    images, labels = fmt.fmnist_arrays(10)
    good_images = fmt.idx_bytes(images, 2051)
    _write_fmnist_test(tmp_path, images_bytes=fmt.idx_bytes(images, 2049))
    with pytest.raises(
        DatasetError, match=r"t10k-images-idx3-ubyte.gz: wrong IDX magic number 2049, expected 2051"
    ):
        create_dataset("fashion-mnist", "test", root=tmp_path)
    _write_fmnist_test(
        tmp_path, images_bytes=good_images[:-100]
    )  # a cut-off file: fewer bytes than the header
    with pytest.raises(
        DatasetError, match=r"t10k-images-idx3-ubyte.gz: size mismatch: header says dims \[10, 28"
    ):
        create_dataset("fashion-mnist", "test", root=tmp_path)
    _write_fmnist_test(tmp_path, images_bytes=good_images[:10])
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte.gz: truncated IDX header"):
        create_dataset("fashion-mnist", "test", root=tmp_path)
    _write_fmnist_test(tmp_path, labels_bytes=fmt.idx_bytes(labels[:7], 2049))
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte.gz: 7 labels for 10 images"):
        create_dataset("fashion-mnist", "test", root=tmp_path)
    _write_fmnist_test(tmp_path, labels_bytes=fmt.idx_bytes(np.full(10, 10, np.uint8), 2049))
    with pytest.raises(
        DatasetError, match=r"t10k-labels-idx1-ubyte.gz: labels must lie in \[0, 9\], found .*10"
    ):
        create_dataset("fashion-mnist", "test", root=tmp_path)


def test_fashion_mnist_corrupt_gzip(tmp_path):
    fmt.write_fashion_mnist(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-30])  # truncated gzip stream
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte.gz: corrupt or truncated gzip"):
        create_dataset("fashion-mnist", "test", root=tmp_path)
    path.write_bytes(b"this is not gzip at all")
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte.gz: corrupt or truncated gzip"):
        create_dataset("fashion-mnist", "test", root=tmp_path)


def test_missing_dataset_names_directory_files_and_remedy(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        create_dataset("fashion-mnist", "train", root=tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path) in message
    assert "missing train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz" in message
    assert "download=True" in message and "dataset-fashion-mnist" in message
    assert isinstance(info.value, ValueError) and isinstance(info.value, DatasetNotFoundError)
    # one file of two present is still "not found", naming the missing one
    fmt.write_fashion_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing train-labels-idx1-ubyte.gz;"):
        create_dataset("fashion-mnist", "train", root=tmp_path)


def test_root_may_hold_one_folder_per_dataset(tmp_path):
    fmt.write_fashion_mnist(tmp_path / "fashion-mnist", n_test=10)
    assert len(create_dataset("fashion-mnist", "test", root=tmp_path)) == 10
    with pytest.raises(
        FileNotFoundError, match=rf"not found in {tmp_path} \(also looked in {tmp_path}/cifar10\)"
    ):
        create_dataset("cifar10", "test", root=tmp_path)


def test_env_var_root(tmp_path, monkeypatch):
    fmt.write_fashion_mnist(tmp_path / "fashion-mnist", n_test=10)
    monkeypatch.setenv("PLUGATTN_DATA", str(tmp_path))
    assert reg.search_dirs("cifar10") == [tmp_path / "cifar10"]
    assert len(create_dataset("fashion-mnist", "test")) == 10
    with pytest.raises(FileNotFoundError, match=rf"cifar10 train split not found in {tmp_path / 'cifar10'}"):
        create_dataset("cifar10", "train")


def test_default_root_is_the_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("PLUGATTN_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert reg.search_dirs("stl10") == [tmp_path / ".cache" / "plugattn" / "data" / "stl10"]
    assert reg.search_dirs("fashion-mnist")[-1] == reg.DEBIAN_FASHION_MNIST
    assert reg.search_dirs("stl10", root="/x/y") == [Path("/x/y"), Path("/x/y/stl10")]  # no other place


def test_debian_fallback_location(tmp_path, monkeypatch):
    debian = tmp_path / "debian"
    fmt.write_fashion_mnist(debian, n_test=10)
    monkeypatch.setattr(reg, "DEBIAN_FASHION_MNIST", debian)
    monkeypatch.setenv("PLUGATTN_DATA", str(tmp_path / "empty"))
    assert len(create_dataset("fashion-mnist", "test")) == 10
    with pytest.raises(
        FileNotFoundError, match=r"not found in .*empty/fashion-mnist \(also looked in .*debian\)"
    ):
        (debian / "t10k-labels-idx1-ubyte.gz").unlink()
        create_dataset("fashion-mnist", "test")


@pytest.mark.skipif(not DEBIAN_DIR.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_real_debian_fashion_mnist_test_split(tmp_path, monkeypatch):
    monkeypatch.setenv("PLUGATTN_DATA", str(tmp_path))  # nothing there: the Debian location is used
    ds = create_dataset("fashion-mnist", "test")
    assert ds.images.shape == (10_000, 1, 28, 28)
    assert torch.bincount(ds.labels).tolist() == [1000] * 10


# ---------------------------------------------------------------------------------------- CIFAR
def test_cifar10_reads_pickles(tmp_path):
    arrays = fmt.write_cifar10(tmp_path)
    for split, n in (("train", 20), ("test", 6)):
        ds = create_dataset("cifar10", split, root=tmp_path)
        x, y = arrays[split]
        assert ds.images.shape == (n, 3, 32, 32) and ds.images.dtype == torch.uint8
        assert torch.equal(ds.images, torch.from_numpy(x))  # plane order R, G, B and rows preserved
        assert ds.labels.tolist() == y.tolist() and ds.labels.dtype == torch.int64
        assert ds.classes[:2] == ["airplane", "automobile"] and ds.num_classes == 10
        assert ds.mean == (0.4914, 0.4822, 0.4465)


def test_cifar_pixel_orientation(tmp_path):
    fmt.write_cifar10(tmp_path)
    x = np.zeros((2, 3, 32, 32), np.uint8)
    x[0, 0, 1, 30] = 200  # red, row 1, column 30: flat index 0*1024 + 1*32 + 30
    fmt.write_pickle(tmp_path / "cifar-10-batches-py" / "test_batch", fmt.cifar_batch(x, [0, 1], b"labels"))
    ds = create_dataset("cifar10", "test", root=tmp_path)
    assert ds.images[0, 0, 1, 30] == 200 and int(ds.images.sum()) == 200


def test_cifar100_fine_labels(tmp_path):
    arrays = fmt.write_cifar100(tmp_path)
    ds = create_dataset("cifar100", "train", root=tmp_path)
    assert ds.images.shape == (8, 3, 32, 32) and ds.num_classes == 100
    assert ds.labels.tolist() == arrays["train"][1].tolist() and ds.classes[7] == "fine_7"
    assert ds.std == (0.2673, 0.2564, 0.2762)


def test_cifar_bad_files(tmp_path):
    fmt.write_cifar10(tmp_path)
    base = tmp_path / "cifar-10-batches-py"
    good = (base / "data_batch_3").read_bytes()
    (base / "data_batch_3").write_bytes(good[: len(good) // 2])
    with pytest.raises(DatasetError, match=r"data_batch_3: not a readable CIFAR pickle"):
        create_dataset("cifar10", "train", root=tmp_path)
    x = np.zeros((2, 3, 31, 32), np.uint8)  # wrong byte count per image
    fmt.write_pickle(base / "data_batch_3", fmt.cifar_batch(x, [0, 1], b"labels"))
    with pytest.raises(
        DatasetError, match=r"data_batch_3: b'data' must be uint8 \(n, 3072\), got uint8 \(2, 2976\)"
    ):
        create_dataset("cifar10", "train", root=tmp_path)
    x = np.zeros((2, 3, 32, 32), np.uint8)
    fmt.write_pickle(base / "data_batch_3", fmt.cifar_batch(x, [0, 10], b"labels"))
    with pytest.raises(
        DatasetError, match=r"data_batch_3: labels must lie in \[0, 9\], found values in \[0, 10\]"
    ):
        create_dataset("cifar10", "train", root=tmp_path)
    fmt.write_pickle(base / "data_batch_3", fmt.cifar_batch(x, [0], b"labels"))
    with pytest.raises(DatasetError, match=r"data_batch_3: 1 labels for 2 images"):
        create_dataset("cifar10", "train", root=tmp_path)
    fmt.write_pickle(base / "data_batch_3", {b"data": x})
    with pytest.raises(DatasetError, match=r"data_batch_3: missing key b'labels'"):
        create_dataset("cifar10", "train", root=tmp_path)
    (base / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing cifar-10-batches-py/data_batch_3;"):
        create_dataset("cifar10", "train", root=tmp_path)


def test_cifar_pickle_cannot_run_code(tmp_path):
    fmt.write_cifar10(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({b"data": Evil()}, f, protocol=2)
    with pytest.raises(
        DatasetError, match=r"test_batch: not a readable CIFAR pickle .*refusing to load \w+\.print"
    ):
        create_dataset("cifar10", "test", root=tmp_path)


# ---------------------------------------------------------------------------------------- STL-10
def test_stl10_standard_split_and_orientation(tmp_path):
    arrays = fmt.write_stl10(tmp_path)
    for split, n in (("train", 10), ("test", 16)):
        ds = create_dataset("stl10", split, root=tmp_path)
        x, y = arrays[split]
        assert ds.images.shape == (n, 3, 96, 96) and ds.images.dtype == torch.uint8
        assert torch.equal(ds.images, torch.from_numpy(x))
        assert ds.labels.tolist() == y.tolist() and int(ds.labels.min()) == 0 and int(ds.labels.max()) == 9
        assert ds.classes == fmt.STL_CLASSES


def test_stl10_column_major_pixel(tmp_path):
    """A byte at (channel 1, column 50, row 3) of the column-major layout lands at [1, 3, 50]."""
    fmt.write_stl10(tmp_path)
    raw = np.zeros(3 * 96 * 96, np.uint8)
    raw[1 * 96 * 96 + 50 * 96 + 3] = 255  # column-major within a plane: index = col * 96 + row
    (tmp_path / "stl10_binary" / "test_X.bin").write_bytes(raw.tobytes())
    (tmp_path / "stl10_binary" / "test_y.bin").write_bytes(bytes([4]))
    ds = create_dataset("stl10", "test", root=tmp_path)
    assert ds.images.shape == (1, 3, 96, 96)
    assert ds.images[0, 1, 3, 50] == 255 and int(ds.images.sum()) == 255
    assert ds.labels.tolist() == [3]


def test_stl10_ham_resplit(tmp_path):
    arrays = fmt.write_stl10(tmp_path, n_train=40, n_test=60)  # 100 labelled images: 70 / 30
    train = create_dataset("stl10", "train", root=tmp_path, split_mode="ham")
    test = create_dataset("stl10", "test", root=tmp_path, split_mode="ham", split_seed=0)
    assert (len(train), len(test)) == (70, 30)
    pooled = torch.from_numpy(np.concatenate([arrays["train"][0], arrays["test"][0]]))
    train_idx, test_idx = ham_split_indices(100, 0)
    assert set(train_idx.tolist()).isdisjoint(test_idx.tolist())
    assert sorted(train_idx.tolist() + test_idx.tolist()) == list(range(100))
    assert torch.equal(train.images, pooled[train_idx]) and torch.equal(test.images, pooled[test_idx])
    other = create_dataset("stl10", "train", root=tmp_path, split_mode="ham", split_seed=1)
    assert not torch.equal(other.images, train.images)  # the seed chooses the split
    # the documented recipe, at full size
    perm = torch.randperm(13000, generator=torch.Generator().manual_seed(0))
    full_train, full_test = ham_split_indices(13000, 0)
    assert (len(full_train), len(full_test)) == (9100, 3900)
    assert torch.equal(full_train, perm[:9100].sort().values)


def test_stl10_bad_files(tmp_path):
    fmt.write_stl10(tmp_path)
    base = tmp_path / "stl10_binary"
    good = (base / "train_X.bin").read_bytes()
    (base / "train_X.bin").write_bytes(good[:-7])
    with pytest.raises(
        DatasetError, match=r"train_X.bin: wrong byte count 276473: not a multiple of 3\*96\*96"
    ):
        create_dataset("stl10", "train", root=tmp_path)
    (base / "train_X.bin").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"train_X.bin: empty file"):
        create_dataset("stl10", "train", root=tmp_path)
    (base / "train_X.bin").write_bytes(good)
    (base / "train_y.bin").write_bytes(bytes([1, 2, 3]))
    with pytest.raises(DatasetError, match=r"train_y.bin: 3 labels for 10 images"):
        create_dataset("stl10", "train", root=tmp_path)
    (base / "train_y.bin").write_bytes(bytes([0] + [1] * 9))  # 0 is out of range on disk (1..10)
    with pytest.raises(
        DatasetError, match=r"train_y.bin: labels must lie in \[1, 10\], found values in \[0, 1\]"
    ):
        create_dataset("stl10", "train", root=tmp_path)
    (base / "class_names.txt").write_text("a\nb\n")
    with pytest.raises(DatasetError, match=r"class_names.txt: expected 10 class names, found 2"):
        create_dataset("stl10", "test", root=tmp_path)
    (base / "test_y.bin").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing stl10_binary/test_y.bin"):
        create_dataset("stl10", "train", root=tmp_path, split_mode="ham")  # the re-split needs both parts
    with pytest.raises(ValueError, match=r"split_mode must be one of 'standard', 'ham'; got 'x'"):
        create_dataset("stl10", "train", root=tmp_path, split_mode="x")


# ---------------------------------------------------------------------------------------- synthetic
def test_synthetic_deterministic_and_learnable():
    a = create_dataset("synthetic", "train", num_samples=200, image_size=16, seed=3)
    b = create_dataset("synthetic", "train", num_samples=200, image_size=16, seed=3)
    test = create_dataset("synthetic", "test", num_samples=100, image_size=16, seed=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert a.images.shape == (200, 3, 16, 16) and a.images.dtype == torch.uint8 and a.num_classes == 10
    assert torch.bincount(a.labels).tolist() == [20] * 10
    assert not torch.equal(a.images[:100], test.images)
    # nearest class mean, fitted on train, classifies test far above chance (10%)
    x_train, x_test = a.images.flatten(1).float(), test.images.flatten(1).float()
    means = torch.stack([x_train[a.labels == k].mean(0) for k in range(10)])
    accuracy = (torch.cdist(x_test, means).argmin(1) == test.labels).float().mean()
    assert accuracy > 0.9
    assert "Never report results" in make_synthetic.__doc__


def test_synthetic_options_checked():
    with pytest.raises(ValueError, match=r"num_classes must be >= 2, got 1"):
        create_dataset("synthetic", "train", num_classes=1)
    grey = create_dataset("synthetic", "val", in_chans=1, num_classes=3, num_samples=6, image_size=8)
    assert grey.images.shape == (6, 1, 8, 8) and grey.mean == (0.5,)


# ---------------------------------------------------------------------------------------- image folders
def test_imagefolder(tmp_path):
    classes = fmt.write_imagefolder(tmp_path, "train")
    fmt.write_imagefolder(tmp_path, "val", per_class=1)
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    ds = create_dataset("imagefolder", "train", root=tmp_path)
    assert isinstance(ds, FolderDataset)
    assert ds.classes == classes and len(ds) == 9 and ds.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    img, label = ds[4]
    assert img.mode == "RGB" and img.getpixel((0, 0)) == (0, 255, 0) and label == 1
    assert len(create_dataset("imagefolder", "val", root=tmp_path)) == 3


def test_imagefolder_errors(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"imagefolder val split not found in .*: missing val; lay the"
    ):
        create_dataset("imagefolder", "val", root=tmp_path)
    (tmp_path / "train" / "cat").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"train: no images in class folder\(s\) \['cat'\]"):
        create_dataset("imagefolder", "train", root=tmp_path)
    (tmp_path / "test").mkdir()
    with pytest.raises(DatasetError, match=r"test: no class sub-folders"):
        create_dataset("imagefolder", "test", root=tmp_path)
    fmt.write_imagefolder(tmp_path, "val", per_class=1)
    bad = tmp_path / "val" / "dog" / "img_0.png"
    bad.write_bytes(b"\x89PNG broken")
    ds = create_dataset("imagefolder", "val", root=tmp_path)
    with pytest.raises(DatasetError, match=r"img_0.png: cannot decode image"):
        ds.load(1)


def test_array_dataset_validates():
    images = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    with pytest.raises(DatasetError, match=r"labels must lie in \[0, 1\], found values in \[0, 2\]"):
        ArrayDataset(images, torch.tensor([0, 2]), ["a", "b"], (0.5,), (0.5,))
    with pytest.raises(ValueError, match=r"images must be a uint8 tensor"):
        ArrayDataset(images.float(), torch.tensor([0, 1]), ["a", "b"], (0.5,), (0.5,))
    with pytest.raises(ValueError, match=r"mean and std need one value per channel \(1\)"):
        ArrayDataset(images, torch.tensor([0, 1]), ["a", "b"], (0.5, 0.5), (0.5,))


def test_gzip_helper_roundtrip(tmp_path):
    path = fmt.write_gz(tmp_path / "x.gz", b"abc")
    assert gzip.open(path).read() == b"abc"
