"""Seeds derived from tuples, identical in every process and on every platform."""

from __future__ import annotations

import hashlib
from typing import Any


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from ``parts`` (ints and strs), via SHA-256 of their repr.

    Unlike ``hash()`` (salted per process for strs) this is the same in every worker and every run, and
    nearby inputs such as ``(seed, epoch)`` and ``(seed, epoch + 1)`` give unrelated streams.
    """
    digest = hashlib.sha256(repr(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)
