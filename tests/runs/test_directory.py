"""The run directory's files: their names in one place, every write whole or not at all."""

from __future__ import annotations

import json
import os

import pytest
import torch

from plugattn import _files
from plugattn.report import write_csv, write_evaluation
from plugattn.runs import RunDirectory


def test_atomic_write_takes_text_bytes_or_a_writer(tmp_path):
    assert _files.atomic_write(tmp_path / "a.txt", "héllo\n").read_text() == "héllo\n"
    assert _files.atomic_write(tmp_path / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    assert _files.atomic_write(tmp_path / "c.bin", lambda f: f.write(b"xyz")).read_bytes() == b"xyz"
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "b.bin", "c.bin"]
    umask = os.umask(0)
    os.umask(umask)
    assert ((tmp_path / "a.txt").stat().st_mode & 0o777) == 0o666 & ~umask


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = _files.atomic_write(tmp_path / "m.jsonl", '{"epoch": 1}\n')

    def dies_half_way(f):
        f.write(b'{"epo')
        raise KeyboardInterrupt  # a kill between two writes

    with pytest.raises(KeyboardInterrupt):
        _files.atomic_write(path, dies_half_way)
    assert path.read_text() == '{"epoch": 1}\n'
    assert os.listdir(tmp_path) == ["m.jsonl"]


def test_append_line_is_whole_or_absent(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    _files.append_line(path, '{"epoch": 1}')
    _files.append_line(path, '{"epoch": 2}\n')
    assert path.read_text() == '{"epoch": 1}\n{"epoch": 2}\n'

    def refuse(*_):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        _files.append_line(path, '{"epoch": 3}')
    assert path.read_text() == '{"epoch": 1}\n{"epoch": 2}\n'
    assert os.listdir(tmp_path) == ["metrics.jsonl"]


def test_a_run_directory_names_and_writes_its_files(tmp_path):
    run = RunDirectory(tmp_path / "run")
    assert not run.holds_run() and not run.has_started() and not run.is_done()
    (run.path).mkdir()
    stale = run.path / ".last.pt.k3j2.tmp"
    stale.write_bytes(b"half a checkpoint of a killed writer")
    run.open({"epochs": 2}, {"torch": torch.__version__}, history=[{"epoch": 1, "test_top1": 50.0}])
    assert not stale.exists()
    assert sorted(os.listdir(run.path)) == ["config.yaml", "env.json", "metrics.jsonl"]
    assert run.has_started() and run.holds_run()
    assert json.loads((run.path / "env.json").read_text()) == {"torch": torch.__version__}
    assert run.history() == [{"epoch": 1, "test_top1": 50.0}]

    run.save({"model": {"w": torch.ones(2)}, "config": {"epochs": 2}}, {"epoch": 2, "test_top1": 75.0})
    assert run.checkpoint == run.path / "last.pt"
    assert torch.equal(run.load()["model"]["w"], torch.ones(2))
    assert [h["epoch"] for h in run.history()] == [1, 2]
    run.mark_done({"epoch": 2})
    assert run.is_done()
    assert sorted(os.listdir(run.path)) == ["config.yaml", "done", "env.json", "last.pt", "metrics.jsonl"]


def test_reports_leave_no_temp_files(tmp_path):
    write_csv(tmp_path / "t.csv", ["a", "b"], [[1, "x,y"]])
    assert (tmp_path / "t.csv").read_text().splitlines() == ["a,b", '1,"x,y"']
    confusion = torch.tensor([[3, 1], [0, 4]])
    result = {"top1": 87.5, "per_class": {"cat": 75.0, "dog": 100.0}}
    write_evaluation(tmp_path / "ev", result, confusion, ["cat", "dog"], title="t")
    files = set(os.listdir(tmp_path / "ev"))
    assert {"eval.json", "confusion.csv", "per_class.csv"} <= files
    assert not [f for f in files if f.endswith(".tmp")]
    assert (tmp_path / "ev" / "per_class.csv").read_text().splitlines()[1:] == ["cat,75.00,4", "dog,100.00,4"]
    assert json.loads((tmp_path / "ev" / "eval.json").read_text()) == result
