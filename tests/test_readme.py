"""The README's usage example runs as written and prints what its comments say."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_usage_example_runs():
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "the README has no python example"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], "README.md", "exec"), {"__name__": "readme"})
    lines = out.getvalue().splitlines()
    assert lines[0] == "torch.Size([8, 64, 32, 32])"
    assert lines[1] == "torch.Size([8, 64])"
    assert lines[2] == "torch.Size([8, 2, 32, 32])"
    assert "'ham'" in lines[3] and "'scsa'" in lines[3]


def test_readme_commands_are_what_ci_runs():
    ci = (README.parent / ".ci" / "run").read_text()
    assert "bash run.sh test" in README.read_text()
    assert "exec bash run.sh test" in ci
