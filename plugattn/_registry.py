"""The one registry class every room uses: attention modules, models, datasets and recipe presets.

A :class:`Registry` is a read-only mapping from lower-case names to entries, with strict registration
(a name registered twice is an error, not a silent replacement), case-insensitive lookup that lists the
known names when it fails, and lookup by class. It also holds the single definition of "no attention".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

__all__ = ["NO_ATTENTION", "Registry", "is_no_attention"]

E = TypeVar("E")

NO_ATTENTION = "none"  # the name that means "no attention module" wherever a module name is taken


def is_no_attention(value: Any) -> bool:
    """``None`` or the name ``"none"`` (any case): the plain backbone, without attention."""
    return value is None or (isinstance(value, str) and value.lower() == NO_ATTENTION)


class Registry(Mapping[str, E], Generic[E]):
    """Named entries of one kind (``kind`` names it in messages: ``"attention"``, ``"model"``, ...).

    Args:
        kind: what an entry is, as the argument that takes its name is called.
        reserved: names that may not be registered (``"none"`` for attention).
        also: what else the argument accepts, for the lookup error (e.g. ``"or 'none'"``).
    """

    def __init__(self, kind: str, *, reserved: tuple[str, ...] = (), also: str = "") -> None:
        self.kind = kind
        self._reserved = reserved
        self._also = also
        self._entries: dict[str, E] = {}

    def register(self, name: str, entry: E, *, owner: str = "") -> E:
        """Add ``entry`` under ``name`` (non-empty, lower-case, not reserved, not yet taken)."""
        self.check_name(name)
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered{f' ({owner})' if owner else ''}")
        self._entries[name] = entry
        return entry

    def check_name(self, name: Any) -> str:
        """``name`` can be registered: a non-empty lower-case string, not reserved."""
        if not isinstance(name, str) or not name or name != name.lower() or name in self._reserved:
            reserved = f" other than {', '.join(map(repr, self._reserved))}" if self._reserved else ""
            raise ValueError(
                f"{self.kind} name must be a non-empty lower-case string{reserved}, got {name!r}"
            )
        return name

    def unregister(self, name: str) -> None:
        """Remove ``name`` (for tests and plugins that register temporarily)."""
        del self._entries[name]

    def lookup(self, name: Any) -> E:
        """The entry of ``name``, in any case; ``ValueError`` listing the known names otherwise."""
        key = name.lower() if isinstance(name, str) else name
        if key not in self._entries:
            also = f" ({self._also})" if self._also else ""
            raise ValueError(f"{self.kind} must be one of {', '.join(self.names())}{also}; got {name!r}")
        return self._entries[key]

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def find(self, match: Callable[[E], bool]) -> tuple[str, E] | None:
        """The first ``(name, entry)`` for which ``match(entry)`` holds (e.g. lookup by class), or None."""
        return next(((n, e) for n, e in self._entries.items() if match(e)), None)

    def __getitem__(self, name: str) -> E:
        return self._entries[name]

    def __delitem__(self, name: str) -> None:
        self.unregister(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self.names())})"
