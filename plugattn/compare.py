"""A fair comparison: every attention module × several seeds under one recipe, mean ± std, with cost.

Runs go to ``OUT/<attention>/seed<k>/`` (each a normal training run, so the grid resumes where it
stopped: finished runs are skipped, interrupted ones resumed). The summary is written as
``OUT/summary.md``, ``OUT/summary.csv`` and ``OUT/accuracy_vs_cost.png``.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from plugattn import runner
from plugattn.benchmark import FLOP_COUNTER, measure
from plugattn.engine.checkpoint import load_checkpoint
from plugattn.engine.config import TrainConfig
from plugattn.report import markdown_table, plot_accuracy_vs_cost, write_csv

__all__ = ["compare", "summarise"]


def _run_dir(out: Path, attention: str, seed: int) -> Path:
    return out / (attention or "none") / f"seed{seed}"


def compare(
    cfg: TrainConfig,
    attentions: Sequence[str],
    seeds: Sequence[int],
    out: str | Path,
    *,
    progress: bool = True,
    log=print,
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
    out = runner.check_output_dir(out)
    for seed in seeds:
        for attention in attentions:
            run_dir = _run_dir(out, attention, seed)
            if (run_dir / "done").is_file():
                log(f"[compare] {attention} seed {seed}: done, skipped")
                continue
            resume = (run_dir / runner.CHECKPOINT).is_file() or (run_dir / "config.yaml").is_file()
            log(f"[compare] {attention} seed {seed}: {'resuming' if resume else 'training'} in {run_dir}")
            run_cfg = replace(cfg, attention=None if attention == "none" else attention, seed=seed)
            runner.train(run_cfg, run_dir, resume=resume, progress=progress, log=log)
    return summarise(out, attentions, seeds, log=log)


def summarise(
    out: str | Path, attentions: Sequence[str], seeds: Sequence[int], *, log=print
) -> list[dict[str, Any]]:
    """Aggregate finished runs into the Markdown/CSV tables and the accuracy-vs-cost plot."""
    out = Path(out)
    rows, models, shape = [], {}, None
    for attention in attentions:
        finals, speeds, first = [], [], None
        for seed in seeds:
            run_dir = _run_dir(out, attention, seed)
            if not (run_dir / "done").is_file():
                continue
            history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
            finals.append(history[-1]["test_top1"])
            speeds.append(statistics.mean(h["images_per_s"] for h in history))
            first = first or run_dir
        if first is None:
            continue
        models[attention] = runner.load_model(first).cpu()
        ckpt = load_checkpoint(first / runner.CHECKPOINT)
        meta, cfg = ckpt["meta"], TrainConfig.from_dict(ckpt["config"])
        shape = _input_shape(cfg, meta)
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
    if rows:
        # The cost columns: plugattn.bench's measurement of the trained models, side by side, batch 1.
        x = torch.randn(1, *shape, generator=torch.Generator().manual_seed(0))
        costs = {c["attention"]: c for c in measure(models, x, warmup=2, repeats=10, train=False)}
        order = ("attention", "runs", "top1_mean", "top1_std", "params", "mflops", "mflops_matmul",
                 "latency_ms", "latency_iqr_ms", "train_images_per_s", "input")  # fmt: skip
        for i, r in enumerate(rows):
            c = costs[r["attention"]]
            r.update(params=c["params"], mflops=c["mflops"], mflops_matmul=c["mflops_matmul"],
                     latency_ms=c["forward_ms"], latency_iqr_ms=c["forward_iqr_ms"])  # fmt: skip
            rows[i] = {k: r[k] for k in order}
    if not rows:
        raise ValueError(f"no finished run under {str(out)!r} to summarise")
    header = [
        "attention",
        "top-1 % (mean ± std)",
        "runs",
        "params",
        "MFLOPs",
        "latency ms (b=1)",
        "train img/s",
    ]
    table = [
        [
            r["attention"],
            f"{r['top1_mean']:.2f} ± {r['top1_std']:.2f}",
            r["runs"],
            f"{r['params']:,}",
            f"{r['mflops']:.1f}",
            f"{r['latency_ms']:.2f}",
            f"{r['train_images_per_s']:.0f}",
        ]
        for r in rows
    ]
    note = (
        f"\nTop-1 of the last epoch (no best-epoch picking), over seeds {list(seeds)}. "
        f"FLOPs: {FLOP_COUNTER}; one {rows[0]['input']} image. Latency: median forward time, batch 1, "
        "measured side by side on this machine by plugattn.bench (`plugattn bench` measures more).\n"
    )
    (out / "summary.md").write_text(markdown_table(header, table) + note)
    write_csv(out / "summary.csv", list(rows[0]), [list(r.values()) for r in rows])
    for r in rows:
        r["train_ms_per_image"] = 1e3 / r["train_images_per_s"]
    plot_accuracy_vs_cost(
        rows,
        out / "accuracy_vs_cost.png",
        costs=[
            ("mflops", "MFLOPs per image (conv + matmul + element-wise)"),
            ("train_ms_per_image", "measured training time per image (ms)"),
        ],
        title=f"{cfg.model} on {cfg.data}: accuracy against cost ({len(seeds)} seeds, same recipe)",
    )
    log((out / "summary.md").read_text())
    return rows


def _input_shape(cfg: TrainConfig, meta: dict[str, Any]) -> tuple[int, int, int]:
    size = cfg.augment.get("size") or meta.get("image_size")
    if isinstance(size, (list, tuple)):
        return (meta["in_chans"], *size)
    return (meta["in_chans"], size, size)
