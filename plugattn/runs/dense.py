"""Does a module help detection or segmentation? Modules × seeds on Fashion-MNIST scenes, paired by seed.

:func:`run_dense` trains one model per (attention, seed) cell from scratch on :class:`CanvasDataset`
scenes built from Fashion-MNIST's training images, evaluates the final model on scenes built from its
test images (items the training never saw), and writes::

    out/recipe.json              the recipe; a second call with another recipe refuses to mix them
    out/<attention>-seed<k>.json one cell's metrics, costs and training curve (written whole)
    out/<attention>-seed<k>.png  the first seed's models on six test scenes, beside the truth
    out/results.csv              one row per finished cell
    out/summary.json, summary.md mean ± sd per module, and each module's difference to the baseline
                                 paired by seed (interval, paired t, exact sign-flip; runs.statistics)

A cell already written is not trained again, so an interrupted grid continues where it stopped.

Fairness, as in ``compare``: every cell of a seed sees the same scenes in the same order, and the layers
every variant shares start from the same weights (drawn for the plain backbone from that seed, then
copied); only the attention module and its own weights differ.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from plugattn._checks import check_choice, check_float, check_int
from plugattn._files import atomic_write
from plugattn.data.canvas import CanvasDataset, collate_scenes
from plugattn.data.registry import create_dataset
from plugattn.engine.dense import (
    evaluate_detection,
    evaluate_segmentation,
    require_pycocotools,
    train_dense_epoch,
)
from plugattn.engine.optim import build_optimizer, build_scheduler
from plugattn.models.detection import DETECTORS, detection_model, require_torchvision
from plugattn.models.segmentation import segmentation_model
from plugattn.report import markdown_table, plot_scenes, without_nan, write_csv
from plugattn.runs.statistics import estimate, paired_difference, smallest_permutation_p

__all__ = ["DenseRecipe", "run_dense", "summarise_dense"]

TASKS = ("detection", "segmentation")
MAIN_METRIC = {"detection": "map", "segmentation": "miou"}
REPORTED = {
    "detection": ("map", "map_50", "map_small", "map_medium"),
    "segmentation": ("miou", "miou_foreground", "pixel_accuracy"),
}
CANVAS_MEAN, CANVAS_STD = (0.1,), (0.2,)  # detector normalisation of the dark grey canvases


@dataclass(frozen=True)
class DenseRecipe:
    """One grid: the task, the backbone, the modules and seeds, the scenes and the optimisation.

    Defaults are the CPU recipe recorded in docs/detection.md and docs/segmentation.md (2 cores: about
    4 minutes a detection cell, 2.5 a segmentation cell).
    """

    task: str
    model: str = "resnet18"
    attentions: tuple[str, ...] = ("none", "scsa", "ham")
    position: str | None = None  # where in the backbone; None: each module's default (create_model)
    detector: str = "faster_rcnn"  # detection only: "faster_rcnn", "retinanet" or "fcos"
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 3  # passes over the training scenes
    batch_size: int = 16
    lr: float = 1e-3  # AdamW, one-cycle schedule (warm-up then cosine)
    weight_decay: float = 1e-4
    train_scenes: int = 640
    test_scenes: int = 200
    size: int = 128  # canvas side, pixels; the detector keeps it (no resizing)
    fpn_channels: int = 64  # FPN width (torchvision's COCO detectors: 256)
    box_head_size: int = 256  # Faster R-CNN's box head width (torchvision's: 1024)
    # Faster R-CNN's sampled RoIs per training image (torchvision's 512: its RoI Align backward, one thread
    # on the CPU, took half of each step) and RPN proposals kept after NMS (torchvision's 2000, 1000 at
    # test; 2x as many before NMS). A scene holds 2-6 objects.
    rois_per_image: int = 64
    proposals: int = 300
    data_seed: int = 0  # the scenes' seed: the same scenes in every cell
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_choice("task", self.task, TASKS)
        check_choice("detector", self.detector, DETECTORS)
        if not self.attentions or len(set(self.attentions)) != len(self.attentions):
            raise ValueError(f"attentions must name distinct modules, got {self.attentions!r}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {self.seeds!r}")
        for s in self.seeds:
            check_int("seeds[]", s, minimum=0)
        for name in ("epochs", "batch_size", "train_scenes", "test_scenes", "fpn_channels", "box_head_size",
                     "rois_per_image", "proposals"):  # fmt: skip
            check_int(name, getattr(self, name), minimum=1)
        check_int("size", self.size, minimum=32)
        check_float("lr", self.lr, low=0, low_open=True)
        check_float("weight_decay", self.weight_decay, low=0)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {**d, "attentions": list(self.attentions), "seeds": list(self.seeds)}


def _build(recipe: DenseRecipe, attention: str | None, num_classes: int, in_chans: int) -> nn.Module:
    if recipe.task == "detection":
        sampling = {}
        if recipe.detector == "faster_rcnn":
            n = recipe.proposals
            sampling = {"box_batch_size_per_image": recipe.rois_per_image, "rpn_pre_nms_top_n_train": 2 * n,
                        "rpn_pre_nms_top_n_test": 2 * n, "rpn_post_nms_top_n_train": n,
                        "rpn_post_nms_top_n_test": n}  # fmt: skip
        return detection_model(
            recipe.detector, recipe.model, num_classes=num_classes, attention=attention,
            position=recipe.position, in_chans=in_chans,
            fpn_channels=recipe.fpn_channels, image_size=recipe.size, image_mean=CANVAS_MEAN * in_chans,
            image_std=CANVAS_STD * in_chans, box_head_size=recipe.box_head_size,
            backbone_kwargs=dict(recipe.model_kwargs), **sampling,
        )  # fmt: skip
    return segmentation_model(recipe.model, num_classes=num_classes, attention=attention,
                              position=recipe.position, in_chans=in_chans, channels=recipe.fpn_channels,
                              **recipe.model_kwargs)  # fmt: skip


def build_dense_model(
    recipe: DenseRecipe, attention: str, seed: int, num_classes: int, in_chans: int
) -> nn.Module:
    """The cell's model: shared layers drawn for the plain model from ``seed``, then copied in."""
    attention = None if attention == "none" else attention
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        plain = _build(recipe, None, num_classes, in_chans)
        if attention is None:
            return plain
        model = _build(recipe, attention, num_classes, in_chans)  # its attention weights: this seed too
    missing = model.load_state_dict(plain.state_dict(), strict=False)
    if missing.unexpected_keys:
        raise RuntimeError(
            f"{recipe.model}: tensors of the plain model without a place: {missing.unexpected_keys[:4]}"
        )
    return model


def _batches(dataset: CanvasDataset, batch_size: int, order: torch.Tensor | None = None):
    order = torch.arange(len(dataset)) if order is None else order
    for start in range(0, len(order), batch_size):
        yield collate_scenes([dataset[int(i)] for i in order[start : start + batch_size]])


def run_cell(
    recipe: DenseRecipe, attention: str, seed: int, train: CanvasDataset, test: CanvasDataset,
    log: Callable[[str], object] = print, figure: Path | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Train and evaluate one (attention, seed) cell; returns its record. ``figure``: a PNG of the first
    test scenes with the truth and the final model's output (:func:`plugattn.report.plot_scenes`)."""
    model = build_dense_model(recipe, attention, seed, train.num_classes, train.in_chans)
    optimizer = build_optimizer(model, "adamw", lr=recipe.lr, weight_decay=recipe.weight_decay,
                                decay_norm_and_bias=False)  # fmt: skip
    steps = math.ceil(recipe.train_scenes / recipe.batch_size)
    scheduler = build_scheduler(optimizer, schedule="onecycle", total_steps=steps * recipe.epochs,
                                steps_per_epoch=steps, warmup_steps=steps // 2, min_lr_ratio=0.1)  # fmt: skip
    curve = []
    for epoch in range(recipe.epochs):
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed * 1000 + epoch))
        stats = train_dense_epoch(model, _batches(train, recipe.batch_size, order), optimizer,
                                  task=recipe.task, scheduler=scheduler)  # fmt: skip
        curve.append({"epoch": epoch + 1, **stats})
        log(f"  {attention} seed {seed} epoch {epoch + 1}/{recipe.epochs}: loss {stats['loss']:.4f} "
            f"({stats['images_per_s']:.1f} img/s)")  # fmt: skip
    start = time.perf_counter()
    evaluate = evaluate_detection if recipe.task == "detection" else evaluate_segmentation
    metrics = evaluate(model, _batches(test, recipe.batch_size), train.num_classes)
    if figure is not None:
        _draw(model, recipe, test, f"{attention}, seed {seed}", figure)
    return {
        "attention": attention,
        "seed": seed,
        "metrics": metrics,
        "params": sum(p.numel() for p in model.parameters()),
        "train_seconds": sum(c["seconds"] for c in curve),
        "eval_seconds": time.perf_counter() - start,
        "curve": curve,
        "threads": torch.get_num_threads(),
    }


@torch.no_grad()
def _draw(model: nn.Module, recipe: DenseRecipe, test: CanvasDataset, name: str, path: Path) -> None:
    images, truths = collate_scenes([test[i] for i in range(min(6, len(test)))])
    model.eval()
    found = model(list(images)) if recipe.task == "detection" else model(images).argmax(1)
    title = f"{recipe.task}: {recipe.model} + {name}, final model on test scenes"
    plot_scenes(images, truths, found, test.classes, path, title=title)


def _scenes(
    recipe: DenseRecipe, root: str | Path | None, download: bool
) -> tuple[CanvasDataset, CanvasDataset]:
    items = {split: create_dataset("fashion-mnist", split, root=root, download=download)
             for split in ("train", "test")}  # fmt: skip
    train = CanvasDataset(items["train"], recipe.train_scenes, size=recipe.size, seed=recipe.data_seed)
    test = CanvasDataset(items["test"], recipe.test_scenes, size=recipe.size, seed=recipe.data_seed + 1)
    return train, test


def _check_recipe_file(out: Path, recipe: DenseRecipe) -> None:
    path = out / "recipe.json"
    if path.exists():
        saved = json.loads(path.read_text())
        if saved != recipe.as_dict():
            changed = sorted(
                k for k in set(saved) | set(recipe.as_dict()) if saved.get(k) != recipe.as_dict().get(k)
            )
            raise ValueError(
                f"out {out} holds a grid with another recipe (differs in {', '.join(changed)}); "
                "choose another --out or repeat the same recipe to continue it"
            )
    else:
        atomic_write(path, json.dumps(recipe.as_dict(), indent=2) + "\n")


def run_dense(
    recipe: DenseRecipe,
    out: str | Path,
    *,
    root: str | Path | None = None,
    download: bool = False,
    log: Callable[[str], object] = print,
) -> dict[str, Any]:
    """Every (attention, seed) cell of ``recipe`` not yet in ``out``, then the summary (returned)."""
    if recipe.task == "detection":  # the extra's libraries before any work, not after the first cell
        require_torchvision()
        require_pycocotools()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_recipe_file(out, recipe)
    train, test = _scenes(recipe, root, download)
    log(f"{recipe.task}: {recipe.model} × {', '.join(recipe.attentions)} × seeds {list(recipe.seeds)}; "
        f"{len(train)} training scenes, {len(test)} test scenes of {recipe.size}²")  # fmt: skip
    for seed in recipe.seeds:
        for attention in recipe.attentions:
            path = out / f"{attention}-seed{seed}.json"
            if path.exists():
                continue
            figure = out / f"{attention}-seed{seed}.png" if seed == recipe.seeds[0] else None
            record = run_cell(recipe, attention, seed, train, test, log, figure)
            atomic_write(path, json.dumps(without_nan(record), indent=2, allow_nan=False) + "\n")
            main = MAIN_METRIC[recipe.task]
            log(f"{attention} seed {seed}: {main} {record['metrics'][main]:.4f} "
                f"({record['train_seconds']:.0f} s training)")  # fmt: skip
    return summarise_dense(out, recipe)


def summarise_dense(out: str | Path, recipe: DenseRecipe, baseline: str = "none") -> dict[str, Any]:
    """The grid's tables from the cells written in ``out`` (see the module docstring)."""
    out = Path(out)
    records = [json.loads(p.read_text()) for a in recipe.attentions for s in recipe.seeds
               if (p := out / f"{a}-seed{s}.json").exists()]  # fmt: skip
    for r in records:  # JSON has no NaN: a metric without ground truth (an empty area range) is null
        r["metrics"] = {k: math.nan if v is None else v for k, v in r["metrics"].items()}
    names = REPORTED[recipe.task]
    table = [
        [
            r["attention"],
            r["seed"],
            *(r["metrics"][n] for n in names),
            r["params"],
            round(r["train_seconds"], 1),
        ]
        for r in records
    ]
    write_csv(out / "results.csv", ["attention", "seed", *names, "params", "train_seconds"], table)
    by = {a: {r["seed"]: r for r in records if r["attention"] == a} for a in recipe.attentions}
    rows, summary = [], {"recipe": recipe.as_dict(), "baseline": baseline, "modules": {}}
    for attention, cells in by.items():
        if not cells:
            continue
        entry = {n: estimate([c["metrics"][n] for c in cells.values()]).as_dict() for n in names}
        entry["params"] = next(iter(cells.values()))["params"]
        entry["train_seconds"] = estimate([c["train_seconds"] for c in cells.values()]).as_dict()
        if attention != baseline and by.get(baseline):
            for n in (MAIN_METRIC[recipe.task], *(("map_small",) if recipe.task == "detection" else ())):
                entry[f"difference_{n}"] = paired_difference(
                    {s: c["metrics"][n] for s, c in cells.items()},
                    {s: c["metrics"][n] for s, c in by[baseline].items()},
                ).as_dict()
        summary["modules"][attention] = entry
        rows.append(_summary_row(attention, entry, names, recipe.task))
    header = ["attention", "seeds", *names, "params", "train s"]
    if recipe.task == "detection":
        header += ["Δ map vs " + baseline, "p (t / sign-flip)", "Δ map_small vs " + baseline]
    else:
        header += ["Δ miou vs " + baseline, "p (t / sign-flip)"]
    floor = smallest_permutation_p(len(recipe.seeds))
    model = f"{recipe.detector} over {recipe.model}" if recipe.task == "detection" else recipe.model
    where = f" (attention at {recipe.position})" if recipe.position else ""
    text = (
        f"# {recipe.task}: {model}{where}, {len(recipe.seeds)} seed{'s' * (len(recipe.seeds) != 1)}\n\n"
            + markdown_table(header, rows)
            + "\n\nMean ± sd over seeds (metrics in %); Δ is paired by seed with its 95% t-interval; "
            f"the exact sign-flip test cannot go below p = {floor:.3g} with {len(recipe.seeds)} seeds.\n"
    )  # fmt: skip
    atomic_write(out / "summary.md", text)
    atomic_write(out / "summary.json", json.dumps(without_nan(summary), indent=2, allow_nan=False) + "\n")
    return summary


def _pct(e: dict[str, float]) -> str:
    if math.isnan(e["mean"]):
        return "–"
    return f"{100 * e['mean']:.2f} ± {100 * e['std']:.2f}" if e["n"] > 1 else f"{100 * e['mean']:.2f}"


def _delta(d: dict[str, Any] | None) -> list[str]:
    if d is None or math.isnan(d["mean"]):
        return ["–", "–"]
    interval = "" if math.isnan(d["low"]) else f" [{100 * d['low']:+.2f}, {100 * d['high']:+.2f}]"
    return [f"{100 * d['mean']:+.2f}{interval}", f"{d['p_t']:.3g} / {d['p_permutation']:.3g}"]


def _summary_row(attention: str, entry: dict[str, Any], names: Sequence[str], task: str) -> list[str]:
    row = [attention, str(entry[names[0]]["n"]), *(_pct(entry[n]) for n in names), f"{entry['params']:,}",
           f"{entry['train_seconds']['mean']:.0f}"]  # fmt: skip
    row += _delta(entry.get(f"difference_{MAIN_METRIC[task]}"))
    if task == "detection":
        row += _delta(entry.get("difference_map_small"))[:1]
    return row
