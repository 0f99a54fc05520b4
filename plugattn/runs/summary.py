"""The answer of a comparison grid: per module, the final accuracy over seeds with its interval, the
difference to the baseline paired by seed with its tests and verdict (``plugattn.runs.statistics``),
and the measured cost; written by :func:`plugattn.report.write_comparison`.

Only finished runs count (a run directory with its ``done`` marker); the cells that are not finished are
listed in the summary, with the error of those that failed.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from plugattn.benchmark import FLOP_COUNTER, measure
from plugattn.engine.config import TrainConfig
from plugattn.report import write_comparison
from plugattn.runs.directory import RunDirectory
from plugattn.runs.evaluate import input_shape, model_from_checkpoint
from plugattn.runs.statistics import estimate, paired_difference, smallest_permutation_p

__all__ = ["FAILED", "cell_directory", "resolve_baseline", "summarise"]

Log = Callable[[str], object]
FAILED = "failed.txt"  # in a cell's directory: the error that stopped it, one line


def cell_directory(out: Path, attention: str, seed: int) -> RunDirectory:
    """Where a grid keeps the run of ``attention`` with ``seed``."""
    return RunDirectory(Path(out) / (attention or "none") / f"seed{seed}")


def summarise(
    out: str | Path,
    attentions: Sequence[str],
    seeds: Sequence[int],
    *,
    baseline: str | None = None,
    log: Log = print,
) -> list[dict[str, Any]]:
    """Aggregate the finished runs under ``out`` into ``summary.{md,csv,json}`` and the plot.

    ``baseline``: the module the others are measured against (default ``"none"`` when the grid has it;
    otherwise no differences are computed unless one is named).
    """
    out = Path(out)
    baseline = resolve_baseline(attentions, baseline)
    finals, rows, models = {}, [], {}
    for attention in attentions:
        runs = {s: r for s in seeds if (r := cell_directory(out, attention, s)).is_done()}
        if runs:
            histories = {s: r.history() for s, r in runs.items()}
            finals[attention] = {s: h[-1]["test_top1"] for s, h in histories.items()}
            rows.append(_accuracy_row(attention, list(histories.values())))
            models[attention] = runs[min(runs)].load()
    if not rows:
        raise ValueError(f"no finished run under {str(out)!r} to summarise")
    for row in rows:
        _add_difference(row, finals, baseline)
    ckpt = next(iter(models.values()))
    shape = input_shape(ckpt)
    costs = _costs({a: model_from_checkpoint(c).eval() for a, c in models.items()}, shape)
    rows = [{**r, **costs[r["attention"]], "input": "x".join(map(str, shape))} for r in rows]
    cfg = TrainConfig.from_dict(ckpt["config"])
    conditions = {
        "model": cfg.model,
        "data": cfg.data,
        "seeds": list(seeds),
        "baseline": baseline,
        "flop_counter": FLOP_COUNTER,
        "smallest_permutation_p": smallest_permutation_p(len(seeds)),
        "missing": _missing(out, attentions, seeds),
    }
    title = f"{cfg.model} on {cfg.data}: accuracy against cost ({len(seeds)} seeds, same recipe)"
    log(write_comparison(out, rows, conditions=conditions, title=title))
    return rows


def resolve_baseline(attentions: Sequence[str], baseline: str | None) -> str | None:
    """The module the others are compared with: ``baseline`` (any case), else ``"none"`` when listed."""
    if baseline is None:
        return "none" if "none" in attentions else None
    if baseline.lower() not in attentions:
        raise ValueError(f"baseline {baseline!r} must be one of the compared modules {list(attentions)}")
    return baseline.lower()


def _accuracy_row(attention: str, histories: list[list[dict[str, Any]]]) -> dict[str, Any]:
    final = estimate([h[-1]["test_top1"] for h in histories])
    best = [max(m["test_top1"] for m in h if "test_top1" in m) for h in histories]
    speeds = [statistics.mean(m["images_per_s"] for m in h) for h in histories]
    return {
        "attention": attention,
        "runs": final.n,
        "top1_mean": final.mean,
        "top1_std": final.std,
        "top1_ci_low": final.low,
        "top1_ci_high": final.high,
        "best_epoch_top1_mean": statistics.mean(best),
        "train_images_per_s": statistics.mean(speeds),
        "train_images_per_s_std": statistics.stdev(speeds) if len(speeds) > 1 else 0.0,
    }


def _add_difference(row: dict[str, Any], finals: dict[str, dict[int, float]], baseline: str | None) -> None:
    keys = ("delta", "delta_ci_low", "delta_ci_high", "p_t", "p_permutation", "verdict", "paired_seeds")
    if baseline is None or baseline not in finals or row["attention"] == baseline:
        verdict = "baseline" if row["attention"] == baseline else ""
        row.update(dict.fromkeys(keys, float("nan")), verdict=verdict, paired_seeds=0)
        return
    d = paired_difference(finals[row["attention"]], finals[baseline])
    row.update(delta=d.mean, delta_ci_low=d.low, delta_ci_high=d.high, p_t=d.p_t)
    row.update(p_permutation=d.p_permutation, verdict=d.verdict, paired_seeds=len(d.seeds))


def _costs(models: dict[str, torch.nn.Module], shape: tuple[int, ...]) -> dict[str, dict[str, Any]]:
    """plugattn.bench's measurement of the trained models, side by side, batch 1."""
    x = torch.randn(1, *shape, generator=torch.Generator().manual_seed(0))
    measured = measure(models, x, warmup=2, repeats=10, train=False)
    return {
        c["attention"]: {
            "params": c["params"],
            "mflops": c["mflops"],
            "mflops_matmul": c["mflops_matmul"],
            "latency_ms": c["forward_ms"],
            "latency_iqr_ms": c["forward_iqr_ms"],
        }
        for c in measured
    }


def _missing(out: Path, attentions: Sequence[str], seeds: Sequence[int]) -> list[dict[str, Any]]:
    """The cells without a finished run, with the error of those that failed."""
    missing = []
    for attention in attentions:
        for seed in seeds:
            run = cell_directory(out, attention, seed)
            if run.is_done():
                continue
            failed = run.path / FAILED
            state = "failed" if failed.is_file() else ("interrupted" if run.has_started() else "not run")
            error = failed.read_text().strip() if failed.is_file() else ""
            missing.append({"attention": attention, "seed": seed, "state": state, "error": error})
    return missing
