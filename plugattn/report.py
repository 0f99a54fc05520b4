"""Tables and plots of results: CSV and Markdown tables, the confusion matrix, accuracy against cost.

Plots need matplotlib (``pip install 'plugattn[train]'``); without it they are skipped with a note and
the tables are still written.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["markdown_table", "plot_accuracy_vs_cost", "plot_confusion", "write_csv"]


def write_csv(path: str | Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    """Write a CSV atomically (temp file + rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp, path)
    return path


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
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


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
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
