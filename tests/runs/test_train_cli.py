"""Whole runs on synthetic data: exact resume, kill -9, bad input, eval, compare, torchrun."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import plugattn
from plugattn import cli, runs
from plugattn.engine.config import resolve_config

# A tiny, fast recipe: ResNet-20 + HAM on 64 synthetic 16x16 images.
SMALL = {
    "data": "synthetic",
    "data_options": {"num_samples": 64, "image_size": 16, "num_classes": 4, "in_chans": 3},
    "model": "resnet20",
    "attention": "ham",
    "epochs": 2,
    "batch_size": 16,
    "eval_batch_size": 32,
    "lr": 0.05,
    "schedule": "cosine",
    "warmup_epochs": 0.5,
    "augment": {"pad": 2, "flip": True},
    "threads": 1,
}
SMALL_FLAGS = [
    "--data", "synthetic", "--model", "resnet20", "--attention", "ham", "--batch-size", "16", "--lr", "0.05",
    "--threads", "1", "--set", "data_options={num_samples: 64, image_size: 16, num_classes: 4}",
    "--set", "eval_batch_size=32", "--set", "schedule=cosine", "--no-progress",
]  # fmt: skip
RESULT_KEYS = ("epoch", "train_loss", "train_top1", "test_loss", "test_top1", "test_top5", "lr")


def cfg(**extra):
    return resolve_config(overrides={**SMALL, **extra})


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def same_results(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert {k: x.get(k) for k in RESULT_KEYS} == {k: y.get(k) for k in RESULT_KEYS}
    assert "test_top1" in a[-1]  # the last epoch is always evaluated


def test_resume_is_exact(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    runs.train(cfg(), straight, progress=False, log=lambda *_: None)
    runs.train(cfg(), split, stop_after=1, progress=False, log=lambda *_: None)
    assert len(metrics(split)) == 1 and not (split / "done").exists()
    runs.train(cfg(), split, resume=True, progress=False, log=lambda *_: None)
    same_results(metrics(straight), metrics(split))
    a = torch.load(straight / "last.pt", weights_only=True)
    b = torch.load(split / "last.pt", weights_only=True)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert (split / "done").exists()
    for key in ("metrics.jsonl", "config.yaml", "env.json", "last.pt"):
        assert (straight / key).is_file()
    line = metrics(straight)[-1]
    assert {"epoch", "train_loss", "test_top1", "lr", "images_per_s"} <= set(line)


def test_resume_is_exact_with_progressive_resizing_and_flip_test(tmp_path):
    """The short CPU recipe's tools: smaller batches early, flip test-time augmentation."""
    extra = {"epochs": 3, "progressive_resize": {"initial_scale": 0.5, "finetune_fraction": 0.34},
             "test_flip": True}  # fmt: skip
    straight, split = tmp_path / "straight", tmp_path / "split"
    runs.train(cfg(**extra), straight, progress=False, log=lambda *_: None)
    runs.train(cfg(**extra), split, stop_after=1, progress=False, log=lambda *_: None)
    runs.train(cfg(**extra), split, resume=True, progress=False, log=lambda *_: None)
    same_results(metrics(straight), metrics(split))
    plain = tmp_path / "plain"
    runs.train(cfg(epochs=3), plain, progress=False, log=lambda *_: None)
    assert metrics(plain)[0]["train_loss"] != metrics(straight)[0]["train_loss"]  # resizing changed it
    result = runs.evaluate_checkpoint(straight, out=tmp_path / "eval")  # eval flips as the run did
    assert result["top1"] == pytest.approx(metrics(straight)[-1]["test_top1"])


def test_eval_every_skips_evaluations_but_never_the_last(tmp_path):
    lines = []
    runs.train(cfg(epochs=3, eval_every=2), tmp_path / "run", progress=False, log=lines.append)
    tested = ["test_top1" in m for m in metrics(tmp_path / "run")]
    assert tested == [False, True, True]  # after epoch 2 (every 2nd) and after the last
    assert "not evaluated" in next(line for line in lines if line.startswith("epoch 1/3"))
    assert json.loads((tmp_path / "run" / "done").read_text())["test_top1"] >= 0


def test_fp16_trains_with_a_loss_scaler_on_the_cpu_too(tmp_path):
    """fp16 gradients underflow without loss scaling; the scaler was once made for CUDA only."""
    runs.train(cfg(amp="fp16", epochs=1), tmp_path / "run", progress=False, log=lambda *_: None)
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ckpt["scaler"] is not None and ckpt["scaler"]["scale"] > 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_loaded_model_reproduces_the_logged_accuracy(tmp_path):
    run = tmp_path / "run"
    runs.train(cfg(epochs=1), run, progress=False, log=lambda *_: None)
    model = plugattn.load_model(run)
    assert not model.training
    result = runs.evaluate_checkpoint(run, out=tmp_path / "eval")
    assert result["top1"] == pytest.approx(metrics(run)[-1]["test_top1"])
    assert (tmp_path / "eval" / "confusion.csv").read_text().startswith("true \\ predicted,")
    assert len((tmp_path / "eval" / "per_class.csv").read_text().splitlines()) == 5
    assert (tmp_path / "eval" / "confusion.png").stat().st_size > 1000


def test_existing_run_is_never_overwritten(tmp_path):
    run = tmp_path / "run"
    runs.train(cfg(epochs=1), run, progress=False, log=lambda *_: None)
    before = (run / "last.pt").read_bytes()
    with pytest.raises(ValueError, match=r"already holds a run; pass --resume"):
        runs.train(cfg(epochs=1), run, progress=False, log=lambda *_: None)
    with pytest.raises(ValueError, match=r"started with another config \(lr: 0.05 -> 0.1\)"):
        runs.train(cfg(epochs=1, lr=0.1), run, resume=True, progress=False, log=lambda *_: None)
    assert (run / "last.pt").read_bytes() == before


def _cli(args, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "plugattn", *args], capture_output=True, text=True, env=env, **kw
    )


@pytest.mark.parametrize(
    "args,match",
    [
        (["train", "--model", "resnet21"], r"model|resnet21"),
        (["train", "--attention", "hma"], r"attention must be one of"),
        (["train", "--data", "mnist-ish"], r"mnist-ish"),
        (["train", "--epochs", "-1"], r"epochs must be >= 1, got -1"),
        (["train", "--data", "cifar10", "--data-dir", "/nonexistent/place"], r"/nonexistent/place"),
        (["eval", "--checkpoint", "/nonexistent/last.pt"], r"does not exist"),
        (["compare", "--attention", "ham,nope"], r"attention must be one of"),
        (["train", "--set", "epochs"], r"--set expects FIELD=VALUE"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(args, match, tmp_path):
    proc = _cli([*args, "--out", str(tmp_path / "o")] if args[0] != "eval" else args, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"plugattn {args[0]}: error:"), proc.stderr
    import re

    assert re.search(match, lines[0]), lines[0]


def test_incompatible_checkpoint_is_a_clear_error(tmp_path):
    run = tmp_path / "run"
    runs.train(cfg(epochs=1), run, progress=False, log=lambda *_: None)
    code = cli.main(["eval", "--checkpoint", str(run), "--data", "synthetic"])  # same classes: fine
    assert code == 0
    ckpt = torch.load(run / "last.pt", weights_only=True)
    ckpt["config"]["attention"] = "se"
    torch.save(ckpt, tmp_path / "wrong.pt")
    assert cli.main(["eval", "--checkpoint", str(tmp_path / "wrong.pt")]) == 2


def test_kill_9_then_resume_completes(tmp_path):
    run = tmp_path / "run"
    args = ["train", *SMALL_FLAGS, "--epochs", "6", "--out", str(run)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "plugattn", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.time() + 240
    while time.time() < deadline and not (run / "last.pt").exists():
        time.sleep(0.05)
    time.sleep(0.3)  # somewhere in a later epoch, maybe mid-write
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (run / "last.pt").exists(), proc.stdout.read().decode()
    done_before = len(metrics(run))
    assert done_before < 6
    resumed = _cli(["train", *SMALL_FLAGS, "--epochs", "6", "--out", str(run), "--resume"], timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert [m["epoch"] for m in metrics(run)] == [1, 2, 3, 4, 5, 6]
    assert (run / "done").exists()
    assert not [p for p in os.listdir(run) if p.endswith(".tmp")]
    straight = tmp_path / "straight"
    full = _cli(["train", *SMALL_FLAGS, "--epochs", "6", "--out", str(straight)], timeout=300)
    assert full.returncode == 0, full.stderr
    same_results(metrics(straight), metrics(run))


def test_compare_grid_resumes_and_summarises(tmp_path):
    out = tmp_path / "grid"
    flags = [
        "compare",
        *[f for f in SMALL_FLAGS if f != "--attention" and f != "ham"],
        "--attention",
        "none,ham",
    ]
    flags += ["--epochs", "1", "--seeds", "2", "--out", str(out)]
    first = _cli(flags, timeout=600)
    assert first.returncode == 0, first.stderr
    summary = (out / "summary.md").read_text()
    assert "| none |" in summary and "| ham |" in summary and "±" in summary
    with (out / "summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {"attention", "runs", "top1_mean", "top1_std", "params", "mflops", "mflops_matmul", "latency_ms",
            "delta", "p_t", "verdict"} <= set(rows[0])  # fmt: skip
    mflops = {r["attention"]: (float(r["mflops"]), float(r["mflops_matmul"])) for r in rows}
    # element-wise work is counted: the total exceeds conv + matmul, and HAM adds to both
    assert all(total > mm > 0 for total, mm in mflops.values())
    assert mflops["ham"][0] > mflops["none"][0]
    assert (out / "accuracy_vs_cost.png").stat().st_size > 1000
    again = _cli(flags, timeout=600)
    assert again.stdout.count("done, skipped") == 4


def test_compare_runs_every_module_at_cifar_widths(tmp_path):
    """SA's and EMA's paper group counts do not divide ResNet-20's 16 channels; the grid once stopped at
    them. Every registered module now runs in the grid at its defaults."""
    out = tmp_path / "grid"
    flags = ["compare", *[f for f in SMALL_FLAGS if f not in ("--attention", "ham")]]
    flags += ["--attention", ",".join(["none", *plugattn.list_attention()]), "--epochs", "1", "--seeds", "1"]
    flags += ["--set", "data_options={num_samples: 32, image_size: 8, num_classes: 4}", "--out", str(out)]
    proc = _cli(flags, timeout=900)
    assert proc.returncode == 0, proc.stderr
    summary = (out / "summary.md").read_text()
    assert all(f"| {name} |" in summary for name in ["none", "sa", "ema", *plugattn.list_attention()])


def test_torchrun_two_processes_agree_with_one(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    base = ["-m", "plugattn", "train", *SMALL_FLAGS, "--epochs", "2", "--set", "amp=none"]
    single = subprocess.run(
        [sys.executable, *base, "--out", str(one)], capture_output=True, text=True, timeout=600
    )
    assert single.returncode == 0, single.stderr
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    multi = subprocess.run([*torchrun, *base, "--out", str(two)], capture_output=True, text=True, timeout=600)
    assert multi.returncode == 0, multi.stderr
    # Rank 0 alone writes: one line per epoch, one checkpoint.
    assert [m["epoch"] for m in metrics(two)] == [1, 2]
    a, b = metrics(one), metrics(two)
    # The same global batches; on CPU each process normalises with its own half-batch statistics
    # (SyncBatchNorm is CUDA-only) and draws its own augmentation, so agreement is close, not exact.
    for x, y in zip(a, b, strict=True):
        assert abs(x["train_loss"] - y["train_loss"]) < 0.05, (x, y)
        assert x["lr"] == pytest.approx(y["lr"])
    # Evaluation counts all 64 test images once across the two ranks: top-1 is a multiple of 1/64.
    assert (b[-1]["test_top1"] * 64 / 100) == pytest.approx(round(b[-1]["test_top1"] * 64 / 100))
    assert abs(a[-1]["test_top1"] - b[-1]["test_top1"]) <= 15
