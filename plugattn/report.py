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
    """Mean top-1 with its 95% interval as error bars (none for a single run) against each
    ``(column, label)`` cost, one panel per cost and one labelled point per module."""
    plt = _pyplot()
    if plt is None:
        return None
    fig, axes = plt.subplots(1, len(costs), figsize=(5.2 * len(costs), 4.4), squeeze=False)
    for ax, (cost, label) in zip(axes[0], costs, strict=True):
        for r in rows:
            low, high = r.get("top1_ci_low", float("nan")), r.get("top1_ci_high", float("nan"))
            yerr = [[r["top1_mean"] - low], [high - r["top1_mean"]]] if low == low else None
            ax.errorbar(r[cost], r["top1_mean"], yerr=yerr, fmt="o", capsize=3)
            ax.annotate(
                r["attention"],
                (r[cost], r["top1_mean"]),
                textcoords="offset points",
                xytext=(5, 4),
                fontsize=8,
            )
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("final test top-1 (%), mean and 95% CI over seeds")
    fig.suptitle(title, fontsize=10)
    return _save_figure(plt, fig, path)


def plot_scenes(
    images: torch.Tensor,
    truths: Sequence[dict[str, torch.Tensor]],
    predictions: Sequence[dict[str, torch.Tensor]] | torch.Tensor,
    classes: Sequence[str],
    path: str | Path,
    *,
    title: str,
    score_threshold: float = 0.5,
) -> Path | None:
    """Scenes ``(B, C, H, W)`` in [0, 1] with what was there and what the model found, one column each.

    Detection (``predictions`` a list of ``{"boxes", "labels", "scores"}``): the true boxes in green
    over the scene, and the detections scoring at least ``score_threshold`` in red with label and score
    below it. Segmentation (``predictions`` the predicted label maps ``(B, H, W)``): the true map and the
    predicted one, coloured by class (background black). ``classes[0]`` is the background.
    """
    plt = _pyplot()
    if plt is None:
        return None
    from matplotlib import colormaps
    from matplotlib.patches import Rectangle

    n, segmentation = len(images), isinstance(predictions, torch.Tensor)
    fig, axes = plt.subplots(2, n, figsize=(2.2 * n, 4.6), squeeze=False)
    grey = images.float().mean(1).clamp(0, 1).numpy()  # (B, H, W)
    palette = colormaps["tab20"].resampled(max(len(classes), 2))
    for j in range(n):
        top, bottom = axes[0][j], axes[1][j]
        if segmentation:
            for ax, labels, name in (
                (top, truths[j]["semantic"], "truth"),
                (bottom, predictions[j], "predicted"),
            ):
                colours = palette(labels.numpy())[..., :3] * (labels.numpy() > 0)[..., None]
                ax.imshow(colours, interpolation="nearest")
                ax.set_title(name, fontsize=7)
        else:
            for ax, found, colour in ((top, truths[j], "lime"), (bottom, predictions[j], "red")):
                ax.imshow(grey[j], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                scores = found.get("scores")
                for k, (x1, y1, x2, y2) in enumerate(found["boxes"].tolist()):
                    if scores is not None and scores[k] < score_threshold:
                        continue
                    ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=0.8, ec=colour))
                    text = classes[int(found["labels"][k])] + ("" if scores is None else f" {scores[k]:.2f}")
                    ax.text(x1, y1, text, fontsize=4.5, color=colour, va="bottom")
            bottom.set_title(f"detections (score ≥ {score_threshold})", fontsize=7)
            top.set_title("truth", fontsize=7)
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
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
    out: Path, rows: Sequence[dict[str, Any]], *, conditions: dict[str, Any], title: str
) -> str:
    """The files of ``plugattn compare`` in ``out``: ``summary.md`` (returned), ``summary.csv``,
    ``summary.json`` (the rows and the conditions) and (with matplotlib) ``accuracy_vs_cost.png``.
    ``rows``: one per module, from its finished runs (``plugattn.runs.summary``)."""
    baseline = conditions.get("baseline")
    header = ["attention", "top-1 % final (mean ± std)", "95% CI", f"Δ vs {baseline or '—'} (95% CI)",
              "p (paired t)", "p (sign-flip)", "verdict (5%)", "runs", "best-epoch top-1 (mean)",
              "params", "MFLOPs", "latency ms, b=1 (median ± IQR)", "train img/s"]  # fmt: skip
    table = [_comparison_cells(r) for r in rows]
    summary = markdown_table(header, table) + _comparison_note(rows, conditions)
    atomic_write(out / "summary.md", summary)
    write_csv(out / "summary.csv", list(rows[0]), [list(r.values()) for r in rows])
    document = {"title": title, "conditions": conditions, "rows": list(rows)}
    atomic_write(out / "summary.json", json.dumps(without_nan(document), indent=2))
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


def _number(value: float, fmt: str) -> str:
    return "—" if value != value else format(value, fmt)  # NaN: not defined for these runs


def _comparison_cells(r: dict[str, Any]) -> list[Any]:
    ci = "—" if r["top1_ci_low"] != r["top1_ci_low"] else f"[{r['top1_ci_low']:.2f}, {r['top1_ci_high']:.2f}]"
    if r["delta"] == r["delta"]:
        delta = (
            f"{r['delta']:+.2f} [{_number(r['delta_ci_low'], '+.2f')}, {_number(r['delta_ci_high'], '+.2f')}]"
        )
    else:
        delta = "—"
    return [
        r["attention"],
        f"{r['top1_mean']:.2f} ± {r['top1_std']:.2f}",
        ci,
        delta,
        _number(r["p_t"], ".3f"),
        _number(r["p_permutation"], ".3f"),
        r["verdict"] or "—",
        r["runs"],
        f"{r['best_epoch_top1_mean']:.2f}",
        f"{r['params']:,}",
        f"{r['mflops']:.1f}",
        f"{r['latency_ms']:.2f} ± {r['latency_iqr_ms']:.2f}",
        f"{r['train_images_per_s']:.0f} ± {r['train_images_per_s_std']:.0f}",
    ]


def _comparison_note(rows: Sequence[dict[str, Any]], conditions: dict[str, Any]) -> str:
    seeds = conditions["seeds"]
    note = (
        f"\nTop-1 of the last epoch over seeds {seeds}, mean ± sample std, with a 95% t-interval. "
        f"Δ: the difference to {conditions.get('baseline') or 'no baseline'} paired by seed (same seed = "
        "same data order and the same initial weights of the shared layers), its 95% t-interval, the "
        "paired t-test and the exact sign-flip permutation test (two-sided; with "
        f"{len(seeds)} seeds its smallest possible p is {conditions['smallest_permutation_p']:.3g}); the "
        "verdict is the t-test's at the 5% level. Best-epoch top-1 picks each run's best evaluated epoch: "
        "optimistic, shown beside the final number, never instead of it. "
        f"FLOPs: {conditions['flop_counter']}; one {rows[0]['input']} image. Latency: forward time, "
        "batch 1, measured side by side on this machine by plugattn.bench. Train img/s: the runs' "
        "mean throughput (± std over seeds).\n"
    )
    missing = conditions.get("missing") or []
    if missing:
        note += f"\n**{len(missing)} cell(s) missing** (not counted above):\n\n"
        for m in missing:
            error = f": {m['error']}" if m["error"] else ""
            note += f"- {m['attention']} seed {m['seed']}: {m['state']}{error}\n"
    return note


def without_nan(value: Any) -> Any:
    """``value`` with every NaN replaced by ``None`` (JSON has no NaN)."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: without_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_nan(v) for v in value]
    return value
