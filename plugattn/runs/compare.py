"""A fair comparison: every attention module × several seeds under one recipe, mean ± std, with cost.

Runs go to ``OUT/<attention>/seed<k>/`` (each a normal run directory, so the grid resumes where it
stopped: finished runs are skipped, interrupted ones resumed). The summary is written by
:func:`plugattn.report.write_comparison` as ``OUT/summary.md``, ``OUT/summary.csv`` and
``OUT/accuracy_vs_cost.png``.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from plugattn.benchmark import FLOP_COUNTER, measure
from plugattn.engine.config import TrainConfig
from plugattn.report import write_comparison
from plugattn.runs.directory import RunDirectory, check_output_dir
from plugattn.runs.evaluate import input_shape, model_from_checkpoint
from plugattn.runs.fit import train

__all__ = ["compare", "summarise"]

Log = Callable[[str], object]


def run_directory(out: Path, attention: str, seed: int) -> RunDirectory:
    """Where the grid keeps the run of ``attention`` with ``seed``."""
    return RunDirectory(out / (attention or "none") / f"seed{seed}")


def compare(
    cfg: TrainConfig,
    attentions: Sequence[str],
    seeds: Sequence[int],
    out: str | Path,
    *,
    progress: bool = True,
    log: Log = print,
) -> list[dict[str, Any]]:
    """Train ``cfg`` with each attention (``"none"`` for the baseline) and each seed; summarise."""
    if not attentions:
        raise ValueError("attention must name at least one module (use 'none' for the plain backbone)")
    if not seeds:
        raise ValueError("seeds must hold at least one seed")
    for name, values in (("attention", [str(a).lower() for a in attentions]), ("seeds", list(seeds))):
        repeated = sorted({str(v) for v in values if values.count(v) > 1})
        if repeated:
            raise ValueError(
                f"{name} lists {', '.join(repeated)} more than once; each must appear once "
                "(a repeated run would be counted twice in the mean)"
            )
    out = check_output_dir(out)
    for seed in seeds:
        for attention in attentions:
            run = run_directory(out, attention, seed)
            if run.is_done():
                log(f"[compare] {attention} seed {seed}: done, skipped")
                continue
            resume = run.has_started()
            log(f"[compare] {attention} seed {seed}: {'resuming' if resume else 'training'} in {run.path}")
            run_cfg = replace(cfg, attention=None if attention == "none" else attention, seed=seed)
            train(run_cfg, run.path, resume=resume, progress=progress, log=log)
    return summarise(out, attentions, seeds, log=log)


def summarise(
    out: str | Path, attentions: Sequence[str], seeds: Sequence[int], *, log: Log = print
) -> list[dict[str, Any]]:
    """Aggregate finished runs into the Markdown/CSV tables and the accuracy-vs-cost plot."""
    out = Path(out)
    rows, models, shape, cfg = [], {}, None, None
    for attention in attentions:
        runs = [r for r in (run_directory(out, attention, s) for s in seeds) if r.is_done()]
        if not runs:
            continue
        finals = [run.history()[-1]["test_top1"] for run in runs]
        speeds = [statistics.mean(h["images_per_s"] for h in run.history()) for run in runs]
        ckpt = runs[0].load()
        models[attention] = model_from_checkpoint(ckpt).eval()
        cfg = TrainConfig.from_dict(ckpt["config"])
        shape = input_shape(ckpt)
        rows.append(
            {
                "attention": attention,
                "runs": len(finals),
                "top1_mean": statistics.mean(finals),
                "top1_std": statistics.stdev(finals) if len(finals) > 1 else 0.0,
                "train_images_per_s": statistics.mean(speeds),
                "input": "x".join(map(str, shape)),
            }
        )
    if not rows:
        raise ValueError(f"no finished run under {str(out)!r} to summarise")
    # The cost columns: plugattn.bench's measurement of the trained models, side by side, batch 1.
    x = torch.randn(1, *shape, generator=torch.Generator().manual_seed(0))
    costs = {c["attention"]: c for c in measure(models, x, warmup=2, repeats=10, train=False)}
    rows = [_with_costs(r, costs[r["attention"]]) for r in rows]
    title = f"{cfg.model} on {cfg.data}: accuracy against cost ({len(seeds)} seeds, same recipe)"
    log(write_comparison(out, rows, seeds=seeds, flop_counter=FLOP_COUNTER, title=title))
    return rows


def _with_costs(row: dict[str, Any], cost: dict[str, Any]) -> dict[str, Any]:
    """``row`` with the measured costs, in the column order of ``summary.csv``."""
    return {
        "attention": row["attention"],
        "runs": row["runs"],
        "top1_mean": row["top1_mean"],
        "top1_std": row["top1_std"],
        "params": cost["params"],
        "mflops": cost["mflops"],
        "mflops_matmul": cost["mflops_matmul"],
        "latency_ms": cost["forward_ms"],
        "latency_iqr_ms": cost["forward_iqr_ms"],
        "train_images_per_s": row["train_images_per_s"],
        "input": row["input"],
    }
