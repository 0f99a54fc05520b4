"""Writes that are seen whole or not at all: a reader, or a process killed at any moment, finds the old
file or the new one, never a part of either.

The one way plugattn writes a file a user keeps (checkpoints, configs, metrics, tables, reports).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["append_line", "atomic_write", "remove_stale_temps", "replacing"]


@contextmanager
def replacing(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``path`` (``.NAME.*<suffix>``) for a writer that needs a file name;
    when the block ends normally it is flushed to the disk and renamed over ``path``, when it raises
    it is deleted. The file gets the permissions an ordinary ``open(path, "w")`` would give it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; these are ordinary files
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself reaches the disk
    finally:
        os.close(dir_fd)


def atomic_write(path: str | Path, content: str | bytes | Callable[[BinaryIO], object]) -> Path:
    """Write ``content`` (text, bytes, or a function that writes to a binary file) to ``path``.

    The data goes to a temporary file beside ``path`` (``.NAME.*.tmp``), is flushed to the disk, and
    is renamed over ``path`` (:func:`replacing`).
    """
    with replacing(path) as tmp, open(tmp, "wb") as f:
        if callable(content):
            content(f)
        else:
            f.write(content.encode() if isinstance(content, str) else content)
    return Path(path)


def append_line(path: str | Path, line: str) -> Path:
    """Add one line to a text file, atomically: the file is rewritten whole, so a kill leaves it with
    or without the line, never with half of it. Meant for small logs (one line per epoch)."""
    path = Path(path)
    before = path.read_text() if path.is_file() else ""
    if before and not before.endswith("\n"):
        before += "\n"
    return atomic_write(path, before + line.rstrip("\n") + "\n")


def remove_stale_temps(path: str | Path) -> list[Path]:
    """Delete the temporary files :func:`atomic_write` left for ``path`` when its process was killed
    mid-write (``.NAME.*.tmp`` beside it); ``path`` itself is never touched. Returns them."""
    path = Path(path)
    stale = sorted(path.parent.glob(f".{path.name}.*.tmp")) if path.parent.is_dir() else []
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale
