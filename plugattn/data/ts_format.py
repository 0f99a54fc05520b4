"""The UEA/UCR ``.ts`` time-series format: a reader for labelled, equal-length series without timestamps.

A file is a header, ``@data``, then one case per line::

    # comments start with '#'
    @problemName Blink
    @timeStamps false
    @univariate false
    @dimensions 4
    @equalLength true
    @seriesLength 510
    @classLabel true LongBlink ShortBlink
    @data
    830.0,719.6,...,870.2:812.1,...,799.0:...:LongBlink

Each case line holds its dimensions (channels) separated by ``:``, the values of one dimension separated by
``,``, and the class label last. Header keys are case-insensitive, blank lines and ``#`` comments are
skipped anywhere, and keys this reader does not use (``@missing``, ``@targetLabel false``, ...) are ignored.

What is read, and what is refused (each with a :class:`DatasetError` naming the file and the line):

* univariate and multivariate series of one common length: the values become float64 ``(N, C, L)``;
  every case must have the dimensions ``@dimensions`` (or ``@univariate true``) gives, else those of the
  first case;
* the cases decide the length: every dimension of every case must have as many values as the first
  case's first dimension, and series of unequal length are refused, naming the line, the dimension and
  both lengths. ``@equalLength`` and ``@seriesLength`` are not trusted, because real files get them wrong
  (the Blink files say ``@equalLength false`` but are equal; EyesOpenShut says ``@seriesLength 127`` and
  holds 128 values per series);
* ``@timestamps true`` (or a ``(time, value)`` pair in a case) is refused: timestamps are not supported;
* missing values (``?``) and non-finite values (``NaN``, ``inf``) are refused rather than filled, so no
  statistic computed downstream is silently NaN: fill or drop them before reading;
* labels become ``0..K-1`` in the order ``@classLabel`` lists them; a case whose label is not listed is
  refused, and so is a file with ``@classLabel false`` (this reader is for classification).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plugattn.data.records import DatasetError, DatasetNotFoundError

__all__ = ["TsFile", "read_ts"]


@dataclass(frozen=True)
class TsFile:
    """The contents of one ``.ts`` file.

    Args:
        path: the file read.
        problem_name: the ``@problemName`` (empty when the header has none).
        classes: the ``@classLabel`` names; label ``k`` is ``classes[k]``.
        values: float64 ``(N, C, L)``: ``N`` cases, ``C`` dimensions, ``L`` time points, as in the file.
        labels: int64 ``(N,)``, each in ``[0, len(classes))``.
    """

    path: Path
    problem_name: str
    classes: list[str]
    values: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class _Header:
    problem_name: str
    classes: list[str]
    dimensions: int | None  # from @dimensions, or 1 for @univariate true; None: from the first case


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _read_lines(path: Path) -> list[str]:
    try:
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise DatasetNotFoundError(f"{path}: file not found") from err
    except OSError as err:
        raise DatasetError(f"{path}: cannot be read ({err})") from err
    # Some headers carry Latin-1 comments (SelfRegulationSCP1's "µV"); the parts read here are ASCII.
    return data.decode("utf-8", errors="replace").split("\n")


def _header_lines(path: Path, lines: list[str]) -> tuple[dict[str, tuple[int, str]], int]:
    """``{key (lower case): (line number, rest of the line)}`` and the index of the line after ``@data``."""
    header: dict[str, tuple[int, str]] = {}
    for i, raw in enumerate(lines):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith("@"):
            raise DatasetError(
                f"{path}, line {i + 1}: expected a '@' header line, a '#' comment or '@data' before the "
                f"cases, got {_clip(line)!r}"
            )
        key, *rest = line[1:].split(None, 1) or [""]
        if key.lower() == "data":
            return header, i + 1
        header[key.lower()] = (i + 1, rest[0].strip() if rest else "")
    raise DatasetError(f"{path}: no @data line (the header must end with @data, then one case per line)")


def _flag(path: Path, header: dict[str, tuple[int, str]], key: str, name: str) -> bool | None:
    if key not in header:
        return None
    number, rest = header[key]
    word = rest.split()[0].lower() if rest.split() else ""
    if word not in ("true", "false"):
        raise DatasetError(f"{path}, line {number}: @{name} must be true or false, got {_clip(rest)!r}")
    return word == "true"


def _count(path: Path, header: dict[str, tuple[int, str]], key: str, name: str) -> int | None:
    if key not in header:
        return None
    number, rest = header[key]
    if not rest.isdigit() or int(rest) < 1:
        raise DatasetError(f"{path}, line {number}: @{name} must be a positive integer, got {_clip(rest)!r}")
    return int(rest)


def _interpret(path: Path, header: dict[str, tuple[int, str]]) -> _Header:
    """The header's keys checked: refuses timestamps, regression targets and a missing class list."""
    if _flag(path, header, "timestamps", "timeStamps"):
        raise DatasetError(f"{path}, line {header['timestamps'][0]}: @timeStamps true is not supported")
    if _flag(path, header, "targetlabel", "targetLabel"):
        raise DatasetError(
            f"{path}, line {header['targetlabel'][0]}: @targetLabel true (regression) is not supported; "
            "this reader needs class labels"
        )
    if _flag(path, header, "classlabel", "classLabel") is not True:
        where = "no @classLabel"
        if "classlabel" in header:
            where = f"line {header['classlabel'][0]}: @classLabel false"
        raise DatasetError(
            f"{path}, {where}: the header must list the classes, '@classLabel true <labels...>'"
        )
    number, rest = header["classlabel"]
    classes = rest.split()[1:]
    if not classes:
        raise DatasetError(f"{path}, line {number}: @classLabel true lists no class labels")
    if len(set(classes)) != len(classes):
        repeated = sorted({c for c in classes if classes.count(c) > 1})
        raise DatasetError(f"{path}, line {number}: @classLabel lists {repeated} more than once")
    dimensions = _count(path, header, "dimensions", "dimensions")
    if dimensions is None and _flag(path, header, "univariate", "univariate"):
        dimensions = 1
    _flag(path, header, "equallength", "equalLength")  # well-formed, but not trusted (module docstring)
    _count(path, header, "serieslength", "seriesLength")
    return _Header(problem_name=header.get("problemname", (0, ""))[1], classes=classes, dimensions=dimensions)


class _Cases:
    """The case lines of one file, checked line by line as they are collected (values still text)."""

    def __init__(self, path: Path, header: _Header) -> None:
        self.path = path
        self.index = {c: k for k, c in enumerate(header.classes)}
        self.dims, self.dims_from = header.dimensions, "the header"
        self.length, self.length_from = 0, ""  # set by the first case
        self.numbers: list[int] = []  # the line number of each case
        self.bodies: list[str] = []  # each case's values, dimensions joined by ','
        self.labels: list[int] = []

    def add(self, number: int, line: str) -> None:
        where = f"{self.path}, line {number}"
        body, sep, label = line.rpartition(":")
        if "(" in body:
            raise DatasetError(f"{where}: a (time, value) pair: series with timestamps are not supported")
        if not sep:
            raise DatasetError(f"{where}: no ':' before a class label; a case is 'v,v,...:v,v,...:label'")
        label = label.strip()
        if label not in self.index:
            allowed = ", ".join(self.index)
            raise DatasetError(f"{where}: class label {label!r} is not in @classLabel ({allowed})")
        if "?" in body:
            raise DatasetError(f"{where}: missing values ('?') are not supported; fill or drop them first")
        parts = body.split(":")
        if self.dims is None:
            self.dims, self.dims_from = len(parts), f"line {number}"
        if len(parts) != self.dims:
            raise DatasetError(f"{where}: {len(parts)} dimensions, but {self.dims_from} gives {self.dims}")
        counts = [p.count(",") + 1 for p in parts]
        if not self.length_from:
            self.length, self.length_from = counts[0], f"dimension 0 of line {number}"
        for d, count in enumerate(counts):
            if count != self.length:
                raise DatasetError(
                    f"{where}: dimension {d} has {count} values but {self.length_from} has "
                    f"{self.length}; series of unequal length are not supported"
                )
        self.numbers.append(number)
        self.bodies.append(body.replace(":", ","))
        self.labels.append(self.index[label])

    def values(self) -> np.ndarray:
        """All values as float64 ``(N, C, L)``, parsed in one vectorised call; errors name the line."""
        try:
            flat = np.array(",".join(self.bodies).split(","), dtype=np.float64)  # (N * C * L,)
        except ValueError:
            self._raise_bad_value()
        values = flat.reshape(len(self.bodies), self.dims, self.length)  # (N, C, L)
        finite = np.isfinite(values).reshape(len(values), -1).all(axis=1)  # (N,)
        if not finite.all():
            number = self.numbers[int(np.argmin(finite))]
            raise DatasetError(
                f"{self.path}, line {number}: a non-finite value (NaN or inf); missing values are not "
                "supported, fill or drop them first"
            )
        return values

    def _raise_bad_value(self) -> None:
        for number, body in zip(self.numbers, self.bodies, strict=True):
            for token in body.split(","):
                try:
                    np.float64(token)
                except ValueError:
                    where = f"{self.path}, line {number}"
                    raise DatasetError(f"{where}: {_clip(token)!r} is not a number") from None
        raise DatasetError(f"{self.path}: the values cannot be read as numbers")  # pragma: no cover


def read_ts(path: str | Path) -> TsFile:
    """Read one ``.ts`` file (see the module docstring for what is supported).

    Returns:
        A :class:`TsFile` with float64 ``values (N, C, L)`` and int64 ``labels (N,)``.

    Raises:
        DatasetNotFoundError: the file does not exist.
        DatasetError: the header or a case is malformed or unsupported; the message names the file and
            the line.
    """
    path = Path(path)
    lines = _read_lines(path)
    raw_header, first = _header_lines(path, lines)
    header = _interpret(path, raw_header)
    cases = _Cases(path, header)
    for i in range(first, len(lines)):
        line = lines[i].strip()
        if line and not line.startswith("#"):
            cases.add(i + 1, line)
    if not cases.bodies:
        raise DatasetError(f"{path}: no cases after @data (the file holds a header only)")
    return TsFile(
        path=path,
        problem_name=header.problem_name,
        classes=header.classes,
        values=cases.values(),
        labels=np.asarray(cases.labels, dtype=np.int64),
    )
