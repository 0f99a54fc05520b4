"""Keeping freed memory in the process, so that a training step does not fault its buffers in again.

glibc's ``malloc`` hands large freed blocks back to the system: blocks it mapped on their own at once,
the top of the heap once more than a trim threshold is free. A training step frees and allocates the
same large tensors every time, so every step page-faults them in again and the kernel zeroes each page
(a ResNet-20 + HAM step at batch 256 on this project's 2-core AVX2 machine: about 8,500 minor faults,
about 1,000 with freed memory kept; docs/performance.md). On glibc, :func:`keep_freed_memory` sets
``M_MMAP_MAX = 0`` (large blocks come from the heap too), ``M_TRIM_THRESHOLD`` to 2 GiB − 1 and
``M_TOP_PAD`` to 64 MiB with ``mallopt``: the process then keeps its peak memory until it exits, as a
caching allocator does. Elsewhere (macOS, Windows, musl) it changes nothing.

The setting is the whole process's and cannot be undone, so the library never makes it on its own: the
``plugattn`` command does, for its own process (``plugattn.cli.run``; ``PLUGATTN_SYSTEM_ALLOCATOR=1``
leaves the allocator alone), and a script may call it. A run records :func:`allocator_state` in its log
and ``env.json``.
"""

from __future__ import annotations

import ctypes
import platform

__all__ = ["allocator_state", "keep_freed_memory"]

# glibc's malloc.h
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4
_SETTINGS = ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**31 - 1), (M_TOP_PAD, 64 << 20))
_STATE = ["system allocator"]


def keep_freed_memory() -> str:
    """Make glibc keep freed memory in this process (see the module's docstring); returns
    :func:`allocator_state`: ``"freed memory kept (glibc mallopt)"`` or why not."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        _STATE[0] = "system allocator (not glibc)"
        return _STATE[0]
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process runs on
    except (OSError, AttributeError):
        _STATE[0] = "system allocator (no mallopt)"
        return _STATE[0]
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    ok = all(mallopt(option, value) == 1 for option, value in _SETTINGS)
    _STATE[0] = "freed memory kept (glibc mallopt)" if ok else "system allocator (mallopt refused a setting)"
    return _STATE[0]


def allocator_state() -> str:
    """What this process's allocator was told: ``"system allocator"`` unless :func:`keep_freed_memory`
    ran."""
    return _STATE[0]
