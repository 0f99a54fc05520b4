"""Comparison grids: paired initialisation, the summary's statistics, and every engine giving the same
answer (sequential, local processes, submitit's local executor, shards gathered afterwards)."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from plugattn.engine.config import resolve_config
from plugattn.runs import compare
from plugattn.runs.build import build_model
from plugattn.runs.compare import summarise_grid
from plugattn.runs.launch import Cell, cells_of_shard
from plugattn.runs.statistics import paired_difference

TINY = {
    "data": "synthetic",
    "data_options": {"num_samples": 48, "image_size": 8, "num_classes": 3},
    "model": "resnet20",
    "epochs": 1,
    "batch_size": 16,
    "eval_batch_size": 48,
    "threads": 1,
    "lr": 0.05,
}
MODULES = ["none", "eca", "ham"]
SEEDS = [0, 1]
# What must not depend on how the cells were run (costs are measured anew each time).
ANSWER = ("attention", "runs", "top1_mean", "top1_std", "delta", "p_t", "p_permutation", "verdict")


def quiet(*_: object) -> None:
    pass


def answer(out) -> list[tuple]:
    rows = json.loads((out / "summary.json").read_text())["rows"]
    return [tuple(r[k] for k in ANSWER) for r in rows]


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    out = tmp_path_factory.mktemp("grid") / "sequential"
    compare(resolve_config(overrides=TINY), MODULES, SEEDS, out, progress=False, log=quiet)
    return out


# --------------------------------------------------------------------------------------- pairing
def test_shared_layers_start_alike_for_a_seed_whatever_the_module():
    def backbone(attention, seed):
        cfg = resolve_config(overrides={**TINY, "attention": attention, "seed": seed})
        return build_model(cfg, num_classes=3, in_chans=3).state_dict()

    plain, ham, scsa = backbone("none", 5), backbone("ham", 5), backbone("scsa", 5)
    for key, value in plain.items():
        torch.testing.assert_close(ham[key], value, rtol=0, atol=0, msg=key)
        torch.testing.assert_close(scsa[key], value, rtol=0, atol=0, msg=key)
    assert not torch.equal(backbone("ham", 6)["conv1.weight"], ham["conv1.weight"])  # the seed matters
    extra = set(ham) - set(plain)
    assert extra and all(".attn." in k for k in extra)  # only HAM's own tensors are HAM's


# --------------------------------------------------------------------------------------- summary
def test_summary_statistics_follow_the_runs(sequential):
    rows = json.loads((sequential / "summary.json").read_text())
    assert rows["conditions"]["baseline"] == "none" and rows["conditions"]["missing"] == []

    def final(a, s):
        return json.loads((sequential / a / f"seed{s}" / "metrics.jsonl").read_text().splitlines()[-1])

    finals = {a: {s: final(a, s)["test_top1"] for s in SEEDS} for a in MODULES}
    by_name = {r["attention"]: r for r in rows["rows"]}
    assert by_name["none"]["verdict"] == "baseline" and by_name["none"]["delta"] is None
    for a in ("eca", "ham"):
        r = by_name[a]
        values = list(finals[a].values())
        assert r["top1_mean"] == pytest.approx(sum(values) / 2)
        assert r["top1_std"] == pytest.approx(abs(values[0] - values[1]) / math.sqrt(2))
        diffs = [finals[a][s] - finals["none"][s] for s in SEEDS]
        assert r["delta"] == pytest.approx(sum(diffs) / 2)
        d = paired_difference(finals[a], finals["none"])
        assert r["verdict"] == d.verdict and r["paired_seeds"] == 2
        assert r["params"] > by_name["none"]["params"] and r["latency_ms"] > 0
    text = (sequential / "summary.md").read_text()
    assert "Δ vs none (95% CI)" in text and "verdict (5%)" in text and "best-epoch top-1" in text
    assert "smallest possible p is 0.5" in text  # 2 seeds: the sign-flip test can never reach 5%
    header = next(csv.reader((sequential / "summary.csv").open()))
    assert header[:6] == ["attention", "runs", "top1_mean", "top1_std", "top1_ci_low", "top1_ci_high"]
    assert (sequential / "accuracy_vs_cost.png").stat().st_size > 1000


def test_shards_cover_the_grid_once():
    cells = [Cell(a, s) for s in range(3) for a in ("none", "se", "ham", "scsa")]
    shards = [cells_of_shard(cells, (k, 5)) for k in range(1, 6)]
    assert sorted((c.attention, c.seed) for s in shards for c in s) == sorted(
        (c.attention, c.seed) for c in cells
    )
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


# --------------------------------------------------------------------------------------- engines
def test_shards_then_summarise_give_the_same_answer(sequential, tmp_path):
    out = tmp_path / "sharded"
    cfg = resolve_config(overrides=TINY)
    for k in (1, 2):
        result = compare(cfg, MODULES, SEEDS, out, shard=(k, 2), progress=False, log=quiet)
        assert result == {"rows": [], "failed": {}}
    assert not (out / "summary.json").exists()  # a shard does not summarise
    assert len(list(out.glob("*/seed*/done"))) == len(MODULES) * len(SEEDS)
    summarise_grid(out, log=quiet)
    assert answer(out) == answer(sequential)


def test_local_processes_give_the_same_answer(sequential, tmp_path):
    out = tmp_path / "jobs"
    compare(resolve_config(overrides=TINY), MODULES, SEEDS, out, jobs=2, progress=False, log=quiet)
    assert answer(out) == answer(sequential)


def test_submitit_local_executor_gives_the_same_answer(sequential, tmp_path):
    pytest.importorskip("submitit")
    from plugattn.runs.launch import SlurmOptions

    out = tmp_path / "submitit"
    slurm = SlurmOptions(cluster="local", cpus_per_job=1, timeout_min=10)
    compare(resolve_config(overrides=TINY), MODULES, SEEDS, out, slurm=slurm, progress=False, log=quiet)
    assert answer(out) == answer(sequential)
    assert any((out / ".submitit").rglob("*_result.pkl"))  # the cells really ran as submitit jobs


def test_an_interrupted_cell_resumes_exactly(tmp_path):
    """A cell stopped after one of two epochs (a killed job) is resumed by the next compare, and ends
    where an uninterrupted run of that cell ends."""
    from plugattn.runs import train
    from plugattn.runs.summary import cell_directory

    cfg = resolve_config(overrides={**TINY, "epochs": 2})
    out = tmp_path / "grid"
    cell = cell_directory(out, "ham", 0)
    train(replace(cfg, attention="ham", seed=0), cell.path, stop_after=1, progress=False, log=quiet)
    assert not cell.is_done()
    lines = []
    compare(cfg, ["ham"], [0], out, progress=False, log=lines.append)
    assert any("ham seed 0: resuming" in line for line in lines)
    straight = tmp_path / "straight"
    train(replace(cfg, attention="ham", seed=0), straight, progress=False, log=quiet)
    last = json.loads((straight / "metrics.jsonl").read_text().splitlines()[-1])
    assert cell.history()[-1]["test_top1"] == last["test_top1"]
    assert cell.history()[-1]["train_loss"] == pytest.approx(last["train_loss"], rel=1e-6)


# --------------------------------------------------------------------------------------- failures
def test_a_failed_cell_is_named_and_the_others_finish(tmp_path):
    """HAM's option is an error for ECA: ECA's cells fail, the others finish and are summarised, the
    summary names the failed cells with their error, and the command exits 1."""
    out = tmp_path / "grid"
    args = ["compare", "--data", "synthetic", "--model", "resnet20", "--attention", "none,eca,ham",
            "--seeds", "2", "--epochs", "1", "--batch-size", "16", "--threads", "1", "--no-progress",
            "--set", "data_options={num_samples: 48, image_size: 8, num_classes: 3}",
            "--set", "attention_kwargs={separation_rate: 0.5}", "--out", str(out)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "plugattn", *args], capture_output=True, text=True, env=env)
    assert proc.returncode == 1, proc.stderr
    assert "2 cell(s) failed" in proc.stderr
    for s in (0, 1):
        assert (out / "ham" / f"seed{s}" / "done").exists() and (out / "none" / f"seed{s}" / "done").exists()
        assert "takes no argument 'separation_rate'" in (out / "eca" / f"seed{s}" / "failed.txt").read_text()
    summary = (out / "summary.md").read_text()
    assert "| ham |" in summary and "| eca |" not in summary
    assert "2 cell(s) missing" in summary and "eca seed 0: failed: ValueError" in summary
    missing = json.loads((out / "summary.json").read_text())["conditions"]["missing"]
    assert [(m["attention"], m["seed"], m["state"]) for m in missing] == [
        ("eca", 0, "failed"),
        ("eca", 1, "failed"),
    ]


def test_grid_arguments_are_checked_before_any_run(tmp_path):
    cfg = resolve_config(overrides=TINY)
    cases = [
        ({"baseline": "se"}, r"baseline 'se' must be one of the compared modules"),
        ({"jobs": 0}, r"jobs must be an integer >= 1, got 0"),
        ({"shard": (3, 2)}, r"shard must be K/N with 1 <= K <= N, got 3/2"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            compare(cfg, MODULES, SEEDS, tmp_path / "g", progress=False, log=quiet, **kwargs)
    assert not (tmp_path / "g").exists()
    with pytest.raises(ValueError, match=r"holds no comparison grid"):
        summarise_grid(tmp_path)


def test_slurm_without_slurm_is_a_clear_error(tmp_path):
    pytest.importorskip("submitit")
    if __import__("shutil").which("srun"):
        pytest.skip("this machine has Slurm")
    from plugattn.runs.launch import SlurmOptions

    with pytest.raises(ValueError, match=r"--launcher slurm: no Slurm here .*use --launcher local"):
        compare(resolve_config(overrides=TINY), ["none"], [0], tmp_path / "g", slurm=SlurmOptions(),
                progress=False, log=quiet)  # fmt: skip
    assert not (tmp_path / "g").exists()


def test_each_local_process_sees_one_gpu(monkeypatch):
    """--jobs on a machine with GPUs: worker k sees GPU k mod count (the GPUs faked: only the slot and
    the environment variable are at stake)."""
    import queue

    from plugattn.runs import launch

    slots = queue.Queue()
    for k in range(3):
        slots.put(k)
    seen = []
    for _ in range(3):
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        launch._claim_slot(slots, 2)
        seen.append(os.environ["CUDA_VISIBLE_DEVICES"])
    assert seen == ["0", "1", "0"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    slots.put(0)
    launch._claim_slot(slots, 0)  # no GPUs: the environment is left alone
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
