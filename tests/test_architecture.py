"""The rooms of plugattn import only the rooms upstream of them (docs/architecture.md).

The path of a run is dataset → batch augmentation → model (backbone + attention) → engine → run
directory → reports; a room may use what lies before it on that path and the shared checks, never what
lies after it. The table below is the rule; the test reads every import statement of the package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "plugattn"
SHARED = {"_checks", "_dims", "_files", "_native", "_registry"}
ALLOWED = {
    "_checks": set(),
    "_dims": set(),
    "_files": set(),
    "_native": set(),
    "_registry": set(),
    "attention": SHARED,
    "data": SHARED,
    "models": SHARED | {"attention"},
    "engine": SHARED | {"data"},
    "report": SHARED,
    "benchmark": SHARED | {"attention", "models", "report"},
    "runs": SHARED | {"package", "attention", "data", "engine", "models", "benchmark", "report"},
    "viz": SHARED | {"attention", "data", "engine", "runs"},
    "export": SHARED | {"engine", "runs"},
    "cli": SHARED | {"package", "attention", "benchmark", "engine", "runs", "viz", "export"},
    "__init__": SHARED | {"attention", "benchmark", "data", "engine", "models", "runs"},
    "__main__": {"cli"},
}


def room_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else path.stem


def imported_rooms(path: Path) -> set[str]:
    """The rooms of plugattn that ``path`` imports (``from plugattn import runs`` counts as runs)."""
    rooms = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            parts = node.module.split(".")
            if parts[0] != "plugattn":
                continue
            if len(parts) > 1:
                rooms.add(parts[1])
            else:  # from plugattn import x, y: each a room (or a name the package exports)
                rooms |= {a.name if (PACKAGE / a.name).exists() or (PACKAGE / f"{a.name}.py").exists()
                          else "package" for a in node.names}  # fmt: skip
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "plugattn":
                    rooms.add(parts[1] if len(parts) > 1 else "package")
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            raise AssertionError(f"{path}: relative import; plugattn imports by absolute name")
    return rooms


FILES = sorted(PACKAGE.rglob("*.py"))


def test_every_room_is_in_the_table():
    assert {room_of(p) for p in FILES} == set(ALLOWED)


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(PACKAGE)) for p in FILES])
def test_a_room_imports_only_what_lies_upstream(path):
    room = room_of(path)
    wrong = imported_rooms(path) - ALLOWED[room] - {room}
    assert not wrong, (
        f"{path.relative_to(PACKAGE)} ({room}) imports {sorted(wrong)}; allowed: {sorted(ALLOWED[room])}"
    )


def test_the_check_can_fail(tmp_path):
    """The reader sees each import form, so a room importing a downstream room would be caught."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import plugattn.engine\nfrom plugattn.models import create_model\nfrom plugattn import runs\n"
    )
    assert imported_rooms(sample) == {"engine", "models", "runs"}


# The house's size limits (issue: "a house a newcomer reads in ten minutes"). A body is counted from
# its first statement after the docstring, so a long signature or a full docstring costs nothing.
MAX_FILE_LINES = 420
MAX_BODY_LINES = 60
MAX_POSITIONAL = 7


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    body = node.body
    if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and len(body) > 1:
        body = body[1:]  # the docstring
    return body[-1].end_lineno - body[0].lineno + 1


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(PACKAGE)) for p in FILES])
def test_files_and_functions_stay_small(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_FILE_LINES, f"{path.name} has {lines} lines; split it by idea"
    for f in _functions(path):
        n = body_lines(f)
        assert n <= MAX_BODY_LINES, f"{path.name}:{f.lineno} {f.name} is {n} lines; name its steps"
        positional = len(f.args.posonlyargs) + len(f.args.args)
        assert positional <= MAX_POSITIONAL, f"{path.name}:{f.lineno} {f.name} takes {positional} positional"


def test_the_size_check_can_fail(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        'def f(a, b):\n    """Doc."""\n' + "    a += 1\n" * 70 + "    return a\n"
        "def g(a, b, c, d, e, f, g, h):\n    pass\n"
    )
    f, g = list(_functions(sample))
    assert body_lines(f) == 71
    assert len(g.args.args) == 8 > MAX_POSITIONAL
