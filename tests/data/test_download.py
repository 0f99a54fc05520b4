"""Downloads against a loopback HTTP server on 127.0.0.1 serving files in the real formats; no internet."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path

import pytest
import torch

from plugattn.data import DatasetError, DownloadError, create_dataset, download_file
from plugattn.data import download as dl
from plugattn.data import registry as reg
from plugattn.data.download import Resource, extract_tar
from tests.data import formats as fmt


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def server(tmp_path):
    """(folder served, base URL) of a threading HTTP server on 127.0.0.1, on a free port."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_download_file_success_with_checksums(server, tmp_path):
    served, url = server
    (served / "blob.bin").write_bytes(b"x" * 3000)
    dest = tmp_path / "out" / "blob.bin"
    sha = hashlib.sha256(b"x" * 3000).hexdigest()
    assert download_file(url + "blob.bin", dest, md5=hashlib.md5(b"x" * 3000).hexdigest(), sha256=sha) == dest
    assert dest.read_bytes() == b"x" * 3000
    assert sorted(p.name for p in dest.parent.iterdir()) == ["blob.bin"]  # no temporary file left


def test_download_file_checksum_mismatch_leaves_nothing(server, tmp_path):
    served, url = server
    (served / "blob.bin").write_bytes(b"corrupted")
    dest = tmp_path / "out" / "blob.bin"
    with pytest.raises(
        DownloadError, match=r"blob.bin from http://127.0.0.1:\d+/blob.bin: md5 checksum mismatch"
    ):
        download_file(url + "blob.bin", dest, md5="0" * 32)
    with pytest.raises(DatasetError, match=r"sha256 checksum mismatch: expected 0+, got [0-9a-f]{64}"):
        download_file(url + "blob.bin", dest, sha256="0" * 64)
    assert list(dest.parent.iterdir()) == []


def test_download_file_404_and_unreachable(server, tmp_path):
    _, url = server
    with pytest.raises(DownloadError, match=r"download of http://127.0.0.1:\d+/missing.gz failed: HTTP 404"):
        download_file(url + "missing.gz", tmp_path / "missing.gz")
    assert list(tmp_path.iterdir()) == [tmp_path / "served"]
    with pytest.raises(DownloadError, match=r"download of http://127.0.0.1:1/x failed"):
        download_file("http://127.0.0.1:1/x", tmp_path / "x", timeout=5)


def _fake_resources(monkeypatch, name, files):
    canonical, _ = dl.RESOURCES[name]
    monkeypatch.setitem(dl.RESOURCES, name, (canonical, tuple(files)))


def test_create_dataset_downloads_fashion_mnist_from_mirror(server, tmp_path, monkeypatch):
    served, url = server
    fmt.write_fashion_mnist(served, n_train=12, n_test=5)
    _fake_resources(
        monkeypatch, "fashion-mnist", [Resource(p.name, _md5(p)) for p in sorted(served.iterdir())]
    )
    root = tmp_path / "data"
    with pytest.raises(FileNotFoundError, match="download=True"):
        create_dataset("fashion-mnist", "test", root=root)
    ds = create_dataset("fashion-mnist", "test", root=root, download=True, base_url=url)
    assert ds.images.shape == (5, 1, 28, 28)
    assert len(list(root.iterdir())) == 4  # all four files are fetched
    # PLUGATTN_MIRROR is the default base URL; files already there and verified are not fetched again
    monkeypatch.setenv("PLUGATTN_MIRROR", url)
    monkeypatch.setenv("PLUGATTN_DATA", str(tmp_path / "env"))
    monkeypatch.setattr(reg, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")  # not found anywhere
    assert len(create_dataset("fashion-mnist", "train", download=True)) == 12
    assert (tmp_path / "env" / "fashion-mnist" / "train-images-idx3-ubyte.gz").is_file()


def test_create_dataset_downloads_and_extracts_cifar10(server, tmp_path, monkeypatch):
    served, url = server
    source = tmp_path / "src"
    fmt.write_cifar10(source, per_batch=2, n_test=3)
    archive = served / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    _fake_resources(monkeypatch, "cifar10", [Resource(archive.name, _md5(archive), extract=True)])
    root = tmp_path / "data"
    ds = create_dataset("cifar10", "test", root=root, download=True, base_url=url)
    assert ds.images.shape == (3, 3, 32, 32)
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-batches-py"]  # archive removed, no staging
    train = create_dataset("cifar10", "train", root=root)
    assert len(train) == 10 and train.labels.dtype == torch.int64


def test_create_dataset_bad_checksum_from_mirror(server, tmp_path, monkeypatch):
    served, url = server
    fmt.write_fashion_mnist(served)
    _fake_resources(
        monkeypatch, "fashion-mnist", [Resource(p.name, "f" * 32) for p in sorted(served.iterdir())]
    )
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match=r"t10k-images-idx3-ubyte.gz from .*: md5 checksum mismatch"):
        create_dataset("fashion-mnist", "test", root=root, download=True, base_url=url)
    assert list(root.iterdir()) == []


def test_no_download_for_imagefolder(tmp_path):
    with pytest.raises(ValueError, match=r"dataset 'imagefolder' has no canonical download"):
        create_dataset("imagefolder", "train", root=tmp_path, download=True)


def test_canonical_table():
    assert dl.RESOURCES["cifar10"] == (
        "https://www.cs.toronto.edu/~kriz/",
        (Resource("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", extract=True),),
    )
    assert dl.RESOURCES["stl10"][1][0].md5 == "91f7769df0f17e558f3565bffb0c7dfb"
    assert dl.RESOURCES["cifar100"][1][0].md5 == "eb9058c3a382ffc7106e4002c42a8d85"
    fashion = {r.filename: r.md5 for r in dl.RESOURCES["fashion-mnist"][1]}
    assert fashion["train-images-idx3-ubyte.gz"] == "8d4fb7e6c68d591d4c3dfef9ec88bf0d"
    assert fashion["t10k-labels-idx1-ubyte.gz"] == "bb300cfdad3c16e7a12e480ee83cd310"


@pytest.mark.parametrize("member", ["../evil.txt", "/tmp/evil.txt", "a/../../evil.txt"])
def test_extract_rejects_escaping_members(tmp_path, member):
    archive = tmp_path / "bad.tar.gz"
    archive.write_bytes(fmt.tar_gz_bytes({"ok/file.txt": b"fine", member: b"evil"}))
    with pytest.raises(DatasetError, match=r"bad.tar.gz: refusing member .*evil.txt.* \(it escapes"):
        extract_tar(archive, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []  # nothing extracted, no staging folder left


def test_extract_rejects_links_and_truncated_archives(tmp_path):
    archive = tmp_path / "link.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("link")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(
        DatasetError, match=r"link.tar: refusing member 'link' \(not a regular file or folder\)"
    ):
        extract_tar(archive, tmp_path / "out")
    good = fmt.tar_gz_bytes({"a/b.bin": bytes(range(256)) * 400})
    (tmp_path / "cut.tar.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(DatasetError, match=r"cut.tar.gz: corrupt or truncated archive"):
        extract_tar(tmp_path / "cut.tar.gz", tmp_path / "out2")


def test_tar_helper_roundtrip():
    data = fmt.tar_gz_bytes({"x/y.txt": b"hello"})
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.extractfile("x/y.txt").read() == b"hello"
