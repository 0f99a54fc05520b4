"""What the registry-wide test matrix needs to know of each attention module.

Each group of modules declares its cases in a file ``_cases_<group>.py`` beside this one, exporting
``CASES: dict[str, Case]``; they are merged here, so a new module enrols by adding one entry. A
registered module without a case fails ``test_every_registered_module_has_a_case``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Case:
    """How to exercise one registered module in the matrix.

    Args:
        param_count: closed-form number of trainable parameters at ``channels`` with ``kwargs``,
            written from the paper's/spec's description (not by counting the module).
        channels: channel counts the matrix uses (must satisfy the module's constraints).
        kwargs: constructor options used in the matrix (defaults when empty).
        onnx_opset: opset for the ONNX export test.
    """

    param_count: Callable[[int], int]
    channels: tuple[int, ...] = (16, 64)
    kwargs: dict[str, Any] = field(default_factory=dict)
    onnx_opset: int = 18


def _collect() -> dict[str, Case]:
    cases: dict[str, Case] = {}
    package = __name__.rsplit(".", 1)[0]
    path = importlib.import_module(package).__path__
    for info in pkgutil.iter_modules(path):
        if info.name.startswith("_cases_"):
            module = importlib.import_module(f"{package}.{info.name}")
            overlap = set(cases) & set(module.CASES)
            if overlap:
                raise RuntimeError(f"{info.name} redefines cases for {sorted(overlap)}")
            cases.update(module.CASES)
    return cases


CASES: dict[str, Case] = _collect()
