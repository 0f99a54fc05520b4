"""The command line: the registry listing and its errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import plugattn
from plugattn import cli


def test_list_prints_every_module_with_its_parameters(capsys):
    assert cli.main(["list", "--channels", "256", "--size", "7"]) == 0
    out = capsys.readouterr().out
    for name in plugattn.list_attention():
        m = plugattn.create_attention(name, 256)
        params = sum(p.numel() for p in m.parameters())
        line = next(row for row in out.splitlines() if row.startswith(name + " "))
        assert f" {params} " in line and " ok " in line + " ", line


def test_bare_command_lists(capsys):
    assert cli.main([]) == 0
    assert "ham" in capsys.readouterr().out


def test_module_that_cannot_take_the_width_is_explained(capsys):
    assert cli.main(["list", "--channels", "6", "--size", "3"]) == 0
    out = capsys.readouterr().out
    assert "scsa: channels must be divisible by the number of SMSA groups=4" in out


def test_a_failing_module_makes_the_exit_non_zero(monkeypatch, capsys):
    class Broken(torch.nn.Module):
        def __init__(self, channels: int) -> None:
            super().__init__()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * float("nan")

    plugattn.register_attention("unit_test_broken", paper="none")(Broken)
    try:
        assert cli.main(["list", "--channels", "256", "--size", "4"]) == 1
        assert "FAILED" in capsys.readouterr().out
    finally:
        del plugattn.attention.registry._REGISTRY["unit_test_broken"]


@pytest.mark.parametrize("flag", ["--channels", "--size", "--batch"])
def test_bad_numbers_give_one_line_and_exit_2(flag, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["list", flag, "0"])
    assert exc.value.code == 2
    assert f"{flag} must be >= 1, got 0" in capsys.readouterr().err


def test_module_entry_point_runs():
    proc = subprocess.run(
        [sys.executable, "-m", "plugattn", "list", "--channels", "128", "--size", "5"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "scsa" in proc.stdout and "Traceback" not in proc.stderr
