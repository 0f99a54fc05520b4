"""Downloading datasets from their canonical URLs, with checksum verification.

Files are fetched with ``urllib`` (no extra dependency) into a temporary file beside the destination,
verified, then renamed into place atomically, so an interrupted or corrupt download never leaves a file
that looks complete. Archives are extracted member by member after checking that none escapes the target
folder.

A mirror replaces the canonical base URL: pass ``base_url`` or set ``PLUGATTN_MIRROR``; the file names
stay the same (``<base_url>/<file name>``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from plugattn._checks import check_choice
from plugattn.data.records import DatasetError

__all__ = ["RESOURCES", "DownloadError", "Resource", "download_dataset", "download_file", "extract_tar"]

logger = logging.getLogger(__name__)

MIRROR_ENV = "PLUGATTN_MIRROR"
_CHUNK = 1 << 20  # bytes read per step (1 MiB)


class DownloadError(DatasetError):
    """A download failed: the server could not be reached, answered an error, or sent a wrong checksum."""


@dataclass(frozen=True)
class Resource:
    """One file of a dataset at its canonical location."""

    filename: str
    md5: str
    extract: bool = False  # a .tar.gz to unpack into the dataset folder


# name: (canonical base URL, files). The md5 sums are the ones the dataset authors publish.
RESOURCES: dict[str, tuple[str, tuple[Resource, ...]]] = {
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        (
            Resource("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            Resource("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
            Resource("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
            Resource("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12e480ee83cd310"),
        ),
    ),
    "cifar10": (
        "https://www.cs.toronto.edu/~kriz/",
        (Resource("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", extract=True),),
    ),
    "cifar100": (
        "https://www.cs.toronto.edu/~kriz/",
        (Resource("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85", extract=True),),
    ),
    "stl10": (
        "http://ai.stanford.edu/~acoates/stl10/",
        (Resource("stl10_binary.tar.gz", "91f7769df0f17e558f3565bffb0c7dfb", extract=True),),
    ),
}


def _digests(path: Path) -> tuple[str, str]:
    md5, sha256 = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            md5.update(chunk)
            sha256.update(chunk)
    return md5.hexdigest(), sha256.hexdigest()


def file_matches(path: str | Path, *, sha256: str | None = None, md5: str | None = None) -> bool:
    """Whether ``path`` exists and has the given checksum(s)."""
    path = Path(path)
    if not path.is_file():
        return False
    got_md5, got_sha256 = _digests(path)
    return (md5 is None or got_md5 == md5.lower()) and (sha256 is None or got_sha256 == sha256.lower())


def download_file(
    url: str,
    dest: str | Path,
    *,
    sha256: str | None = None,
    md5: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest`` and verify its checksum(s); return ``dest``.

    The bytes go to a temporary file in ``dest``'s folder, are hashed as they arrive, and the file is
    renamed to ``dest`` only when every given checksum matches; on any failure nothing is left behind.

    Args:
        url: what to fetch (any scheme urllib handles: http, https, file).
        dest: where the file goes; its folder is created.
        sha256: expected SHA-256 hex digest, or None.
        md5: expected MD5 hex digest, or None.
        timeout: seconds to wait for the server on each blocking operation (default 60).

    Raises:
        DownloadError: the server cannot be reached, answers an HTTP error, or the checksum differs.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        md5_hash, sha256_hash = hashlib.md5(), hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                logger.info("downloading %s -> %s", url, dest)
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    md5_hash.update(chunk)
                    sha256_hash.update(chunk)
        except urllib.error.HTTPError as err:
            raise DownloadError(f"download of {url} failed: HTTP {err.code} {err.reason}") from err
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise DownloadError(f"download of {url} failed: {reason}") from err
        for kind, expected, got in (("md5", md5, md5_hash), ("sha256", sha256, sha256_hash)):
            if expected is not None and got.hexdigest() != expected.lower():
                raise DownloadError(
                    f"{dest.name} from {url}: {kind} checksum mismatch: expected {expected.lower()}, "
                    f"got {got.hexdigest()}; the file was deleted (a bad mirror or an interrupted transfer)"
                )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def extract_tar(archive: str | Path, directory: str | Path) -> None:
    """Unpack a tar(.gz) into ``directory``, refusing any member that would land outside it.

    Only regular files and folders are extracted; links, devices, absolute paths and ``..`` components
    raise :class:`DatasetError`. Members are first unpacked into a temporary folder inside ``directory``
    and moved into place at the end, so an interrupted extraction leaves no half-filled dataset folder.
    """
    archive, directory = Path(archive), Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory.resolve()
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=directory))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = tar.getmembers()
                for member in members:
                    name = member.name
                    if not (member.isfile() or member.isdir()):
                        raise DatasetError(
                            f"{archive}: refusing member {name!r} (not a regular file or folder)"
                        )
                    if os.path.isabs(name) or ".." in Path(name).parts:
                        raise DatasetError(f"{archive}: refusing member {name!r} (it escapes {directory})")
                    if not (target / name).resolve().is_relative_to(target):
                        raise DatasetError(f"{archive}: refusing member {name!r} (it escapes {directory})")
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(staging, members=members, filter="data")
                else:  # pragma: no cover - Python without PEP 706 filters; members were checked above
                    tar.extractall(staging, members=members)  # noqa: S202
        except (tarfile.TarError, EOFError, OSError) as err:
            raise DatasetError(f"{archive}: corrupt or truncated archive ({err})") from err
        for entry in staging.iterdir():
            dest = directory / entry.name
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest)
            os.replace(entry, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def download_dataset(name: str, directory: str | Path, *, base_url: str | None = None) -> None:
    """Fetch (and unpack) every file of dataset ``name`` into ``directory``, skipping verified ones.

    Args:
        name: a key of :data:`RESOURCES` (``fashion-mnist``, ``cifar10``, ``cifar100``, ``stl10``).
        directory: the dataset's folder (what ``create_dataset`` reads).
        base_url: replaces the canonical base URL (default: ``$PLUGATTN_MIRROR`` if set, else canonical).
    """
    check_choice("name", name, tuple(RESOURCES))
    canonical, resources = RESOURCES[name]
    base = base_url or os.environ.get(MIRROR_ENV) or canonical
    directory = Path(directory)
    for res in resources:
        dest = directory / res.filename
        if not file_matches(dest, md5=res.md5):
            download_file(f"{base.rstrip('/')}/{res.filename}", dest, md5=res.md5)
        if res.extract:
            extract_tar(dest, directory)
            dest.unlink()  # the unpacked files are what is read; the archive would double the disk use
