"""Tables and plots of results: CSV and Markdown tables, the confusion matrix, accuracy against cost;
the files of an evaluation and of a comparison. Every file is written atomically.

Plots need matplotlib (``pip install 'plugattn[train]'``); without it they are skipped with a note and
the tables are still written.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from plugattn._files import atomic_write

__all__ = [
    "markdown_table",
    "plot_accuracy_vs_cost",
    "plot_confusion",
    "write_comparison",
    "write_csv",
    "write_evaluation",
]


def write_csv(path: str | Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    """Write a CSV atomically."""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    return atomic_write(path, text.getvalue())


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed; plots skipped (pip install 'plugattn[train]')")
        return None
    return plt


def plot_confusion(
    confusion: torch.Tensor, classes: Sequence[str], path: str | Path, *, title: str
) -> Path | None:
    """The confusion matrix (rows true, columns predicted) as a PNG, normalised per true class."""
    plt = _pyplot()
    if plt is None:
        return None
    norm = confusion.double() / confusion.sum(1, keepdim=True).clamp(min=1)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * n, 0.8 + 0.5 * n))
    im = ax.imshow(norm.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                v = norm[i, j].item()
                ax.text(
                    j,
                    i,
                    f"{100 * v:.0f}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if v > 0.5 else "black",
                )
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return _save_figure(plt, fig, path)


def plot_accuracy_vs_cost(
    rows: Sequence[dict[str, Any]], path: str | Path, *, costs: Sequence[tuple[str, str]], title: str
) -> Path | None:
    """Mean top-1 (± std as error bars) against each ``(column, label)`` cost, one panel per cost and one
    labelled point per module."""
    plt = _pyplot()
    if plt is None:
        return None
    fig, axes = plt.subplots(1, len(costs), figsize=(5.2 * len(costs), 4.4), squeeze=False)
    for ax, (cost, label) in zip(axes[0], costs, strict=True):
        for r in rows:
            ax.errorbar(r[cost], r["top1_mean"], yerr=r["top1_std"], fmt="o", capsize=3)
            ax.annotate(
                r["attention"],
                (r[cost], r["top1_mean"]),
                textcoords="offset points",
                xytext=(5, 4),
                fontsize=8,
            )
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test top-1 (%), mean ± std over seeds")
    fig.suptitle(title, fontsize=10)
    return _save_figure(plt, fig, path)


def _save_figure(plt, fig, path: str | Path) -> Path:
    fig.tight_layout()
    try:
        return atomic_write(path, lambda f: fig.savefig(f, dpi=120, format="png"))
    finally:
        plt.close(fig)


def write_evaluation(
    out: Path, result: dict[str, Any], confusion: torch.Tensor, classes: Sequence[str], *, title: str
) -> None:
    """The files of ``plugattn eval`` in ``out``: ``eval.json`` (``result``), ``confusion.csv``,
    ``per_class.csv`` and (with matplotlib) ``confusion.png``."""
    out.mkdir(parents=True, exist_ok=True)
    write_csv(
        out / "confusion.csv",
        ["true \\ predicted", *classes],
        [[c, *row] for c, row in zip(classes, confusion.tolist(), strict=True)],
    )
    per_class = result["per_class"]
    write_csv(
        out / "per_class.csv",
        ["class", "accuracy_percent", "samples"],
        [[c, f"{per_class[c]:.2f}", n] for c, n in zip(classes, confusion.sum(1).tolist(), strict=True)],
    )
    atomic_write(out / "eval.json", json.dumps(result, indent=2))
    plot_confusion(confusion, classes, out / "confusion.png", title=title)


def write_comparison(
    out: Path, rows: Sequence[dict[str, Any]], *, seeds: Sequence[int], flop_counter: str, title: str
) -> str:
    """The files of ``plugattn compare`` in ``out``: ``summary.md`` (returned), ``summary.csv`` and
    (with matplotlib) ``accuracy_vs_cost.png``. ``rows``: one per module, from its finished runs."""
    header = ["attention", "top-1 % (mean ± std)", "runs", "params", "MFLOPs", "latency ms (b=1)",
              "train img/s"]  # fmt: skip
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
        f"FLOPs: {flop_counter}; one {rows[0]['input']} image. Latency: median forward time, batch 1, "
        "measured side by side on this machine by plugattn.bench (`plugattn bench` measures more).\n"
    )
    summary = markdown_table(header, table) + note
    atomic_write(out / "summary.md", summary)
    write_csv(out / "summary.csv", list(rows[0]), [list(r.values()) for r in rows])
    plot_accuracy_vs_cost(
        [{**r, "train_ms_per_image": 1e3 / r["train_images_per_s"]} for r in rows],
        out / "accuracy_vs_cost.png",
        costs=[
            ("mflops", "MFLOPs per image (conv + matmul + element-wise)"),
            ("train_ms_per_image", "measured training time per image (ms)"),
        ],
        title=title,
    )
    return summary
