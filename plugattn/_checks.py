"""Argument checks shared by every room of plugattn.

Each check raises ``ValueError`` naming the argument, the value it got and what is allowed, so a user
sees at once which argument to fix. They return the validated value so they can be used inline.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(name: str, value: Any, *, minimum: int | None = None, odd: bool = False) -> int:
    """An integer (not a bool), at least ``minimum``, odd when ``odd``."""
    if not _is_int(value):
        raise ValueError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
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
    """A finite real number inside [low, high] (either end open on request)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    interval = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{name} must lie in {interval}, got {value}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ValueError(f"{name} must lie in {interval}, got {value}")
    return float(value)


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
