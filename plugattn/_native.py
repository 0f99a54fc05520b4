"""Native kernels: a C file of the package, compiled on first use and loaded with ctypes.

Nothing is compiled at ``pip install`` time and nothing needs a compiler to use plugattn: a kernel
library is built the first time a module asks for it, with the system C compiler (``$CC``, else
``cc``/``gcc``/``clang``) and OpenMP, into a cache directory, and loaded from there afterwards. If no
compiler is found, the build fails, or ``PLUGATTN_NATIVE=0`` is set, :func:`load` returns ``None`` and
the caller runs its pure-torch path, which computes the same function (the tests hold the two to each
other). :func:`status` says which it is and why, for the start of a run and for bug reports.

The cache key is the source with the headers of its folder that it includes, the compiler's version
line, the flags and the CPU's instruction-set flags: ``-march=native`` code is never loaded on a CPU
it was not built for (a home directory shared between machines of different kinds keeps one library
per kind). The cache lives in
``$PLUGATTN_CACHE`` or ``$XDG_CACHE_HOME/plugattn`` (``~/.cache/plugattn``); a library is written to a
temporary name and renamed into place, so concurrent first uses never load a half-written file.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["load", "status"]

# -fno-trapping-math: nothing here runs with floating-point exceptions enabled, and without it GCC keeps
# branches and libm calls (floorf, comparisons in selects) out of vectorised loops; HAM's and SCSA's
# kernels ran 3-20% faster with it (forward + backward, the two builds in alternating processes, two
# runs, Intel AVX-512, 2026-12-03), and gave bit-identical outputs and gradients.
FLAGS = (
    "-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-fno-trapping-math",
    "-shared", "-fPIC", "-std=c11",
)  # fmt: skip
_LOCK = threading.Lock()
_LIBRARIES: dict[Path, ctypes.CDLL | None] = {}
_REASONS: dict[str, str] = {}


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cpu_flags() -> str:
    """The CPU's instruction-set flags (Linux), else the machine's name: part of the cache key."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.machine() + platform.processor()


def _cache_dir() -> Path:
    root = os.environ.get("PLUGATTN_CACHE")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "plugattn"


def _text(source: Path) -> str:
    """The source and the headers of its own folder it includes (``#include "name.h"``), and theirs:
    what the built library depends on besides the compiler, its flags and the CPU."""
    texts, seen, todo = [], set(), [source]
    while todo:
        path = todo.pop(0)
        if path in seen:
            continue
        seen.add(path)
        texts.append(path.read_text())
        names = re.findall(r'^\s*#\s*include\s+"([^"]+)"', texts[-1], flags=re.MULTILINE)
        todo += [source.parent / name for name in names]
    return "\0".join(texts)


def _build(source: Path, compiler: str) -> Path:
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60).stdout
    key = hashlib.sha256(
        "\0".join((_text(source), version.splitlines()[0] if version else "", *FLAGS, _cpu_flags())).encode()
    ).hexdigest()[:16]
    target = _cache_dir() / "kernels" / f"{source.stem}-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        done = subprocess.run(
            [compiler, *FLAGS, str(source), "-o", tmp, "-lm"], capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0:
            raise RuntimeError(f"{compiler} failed on {source.name}: {done.stderr.strip()[-2000:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def load(source: Path, signatures: Mapping[str, tuple[tuple, Any]] | None = None) -> ctypes.CDLL | None:
    """The compiled library of the C file ``source``, built on first use; ``None`` when unavailable
    (see :func:`status` for the reason). Thread-safe; built and loaded once per process.

    ``signatures`` maps function names to ``(argtypes, restype)``, set on the library when it is loaded.
    """
    with _LOCK:
        if source in _LIBRARIES:
            return _LIBRARIES[source]
        library = None
        if os.environ.get("PLUGATTN_NATIVE", "1") == "0":
            _REASONS[source.stem] = "off (PLUGATTN_NATIVE=0)"
        elif (compiler := _compiler()) is None:
            _REASONS[source.stem] = "no C compiler found ($CC, cc, gcc, clang)"
        else:
            try:
                # torch is imported first, so the OpenMP runtime the library links (libgomp) is the one
                # torch already loaded: one thread pool, not two.
                import torch  # noqa: F401

                library = ctypes.CDLL(str(_build(source, compiler)))
                for name, (args, result) in (signatures or {}).items():
                    getattr(library, name).argtypes = args
                    getattr(library, name).restype = result
                _REASONS[source.stem] = f"native ({Path(compiler).name}, OpenMP)"
            except (OSError, RuntimeError, subprocess.SubprocessError) as err:
                _REASONS[source.stem] = f"pure torch (building {source.name} failed: {err})"
        _LIBRARIES[source] = library
        return library


def status(stem: str) -> str:
    """How the kernels of ``stem`` (a C file's name without ``.c``) run in this process: ``"native (…)"``,
    ``"off (…)"``, ``"pure torch (…why…)"``, or ``"not loaded yet"``."""
    return _REASONS.get(stem, "not loaded yet")
