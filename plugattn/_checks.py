"""Argument checks shared by every room of plugattn.

Each check raises ``ValueError`` naming the argument, the value it got and what is allowed, so a user
sees at once which argument to fix. They return the validated value so they can be used inline.
"""

from __future__ import annotations

import math
import operator
import os
from collections.abc import Collection
from typing import Any


def _as_int(value: Any) -> int | None:
    """``value`` as a Python int when it is an integer (``int``, ``np.int64``, a 0-d integer tensor: what
    ``operator.index`` accepts), else None; bools are not integers here."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def check_int(name: str, value: Any, *, minimum: int | None = None, odd: bool = False) -> int:
    """An integer (not a bool), at least ``minimum``, odd when ``odd``; returned as a Python ``int``
    (integer-like values such as ``np.int64(64)`` or ``torch.tensor(64)`` are accepted)."""
    as_int = _as_int(value)
    if as_int is None:
        raise ValueError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    value = as_int
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if odd and value % 2 == 0:
        raise ValueError(f"{name} must be odd (so 'same' padding keeps the size), got {value}")
    return value


def check_float(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite real number inside [low, high] (either end open on request; a missing end is infinite,
    and infinity itself is never allowed, so the message shows that end open)."""
    left = "(" if low_open or low is None else "["
    right = ")" if high_open or high is None else "]"
    interval = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{name} must lie in {interval}, got {value}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ValueError(f"{name} must lie in {interval}, got {value}")
    return float(value)


def check_threads(name: str, value: Any) -> int:
    """A thread count in ``[1, os.cpu_count()]``: more threads than logical CPUs only slows torch down,
    and a huge count crashes it (``torch.set_num_threads(100000)`` ends in a segmentation fault)."""
    value = check_int(name, value, minimum=1)
    cpus = os.cpu_count() or 1
    if value > cpus:
        raise ValueError(f"{name} must lie in [1, {cpus}] (this machine's logical CPUs), got {value}")
    return value


def check_choice(name: str, value: Any, allowed: Collection[Any]) -> Any:
    """One of ``allowed``."""
    if value not in allowed:
        options = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{name} must be one of {options}; got {value!r}")
    return value


def check_divisible(name: str, value: int, divisor: int, divisor_name: str) -> int:
    """``value`` is a multiple of ``divisor``."""
    if value % divisor != 0:
        raise ValueError(f"{name} must be divisible by {divisor_name}={divisor}, got {name}={value}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """``True`` or ``False`` itself (not 1, 0, ``"yes"`` or ``None``)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return value
