"""Training and evaluation for dense tasks: detection (COCO-style mAP) and semantic segmentation (mIoU).

Batches are what :func:`plugattn.data.canvas.collate_scenes` makes: images ``(B, C, H, W)`` and a list
of per-image targets (``boxes``, ``labels``, ``area``, ``semantic``).

* Detection models are torchvision's (``model(images, targets)`` returns a dict of losses in training,
  a list of ``{"boxes", "labels", "scores"}`` in eval). Their mAP is pycocotools' ``COCOeval`` — the
  reference implementation COCO's own leaderboard uses — over the whole split: AP averaged over IoU
  0.50:0.95, AP at 0.50 and 0.75, and AP for small (< 32² px), medium and large objects, where an
  object's area is its visible pixel count, as COCO's segment areas.
* Segmentation models return logits ``(B, K, H, W)``; the loss is per-pixel cross-entropy and the
  metrics come from one confusion matrix over the split: IoU per class ``TP / (TP + FP + FN)``, their
  mean over classes present in the ground truth or the predictions (mIoU, background included, as
  Pascal VOC's; ADE20K instead ignores its unlabelled pixels), and pixel accuracy.
"""

from __future__ import annotations

import contextlib
import io
import math
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "coco_metrics",
    "evaluate_detection",
    "evaluate_segmentation",
    "require_pycocotools",
    "segmentation_metrics",
    "train_dense_epoch",
]

Batch = tuple[torch.Tensor, list[dict[str, torch.Tensor]]]
COCO_NAMES = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large")


def _loss(model: nn.Module, task: str, images: torch.Tensor, targets: list[dict]) -> torch.Tensor:
    if task == "detection":
        boxes = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]
        return sum(model(list(images), boxes).values())
    semantic = torch.stack([t["semantic"] for t in targets])  # (B, H, W)
    return F.cross_entropy(model(images), semantic)


def train_dense_epoch(
    model: nn.Module,
    batches: Iterable[Batch],
    optimizer: torch.optim.Optimizer,
    *,
    task: str,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    max_grad_norm: float | None = 10.0,
) -> dict[str, float]:
    """One pass over ``batches``; returns the mean loss, images, seconds and images per second.

    ``max_grad_norm`` clips the gradients' global norm (detectors trained from scratch spike in their
    first steps; ``None`` leaves them alone). A non-finite loss stops the epoch with ``FloatingPointError``
    rather than training on.
    """
    if task not in ("detection", "segmentation"):
        raise ValueError(f"task must be 'detection' or 'segmentation', got {task!r}")
    model.train()
    total, images_seen, start = 0.0, 0, time.perf_counter()
    for images, targets in batches:
        loss = _loss(model, task, images, targets)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{task} loss is {loss.item()} after {images_seen} images")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if max_grad_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total += loss.item() * len(images)
        images_seen += len(images)
    seconds = time.perf_counter() - start
    return {
        "loss": total / max(images_seen, 1),
        "images": images_seen,
        "seconds": seconds,
        "images_per_s": images_seen / seconds if seconds > 0 else math.nan,
    }


@torch.no_grad()
def evaluate_detection(model: nn.Module, batches: Iterable[Batch], num_classes: int) -> dict[str, float]:
    """COCO-style box mAP of ``model`` over ``batches`` (see the module docstring)."""
    model.eval()
    truths, detections = [], []
    for images, targets in batches:
        for target, out in zip(targets, model(list(images)), strict=True):
            truths.append(target)
            detections.append({k: out[k].float() for k in ("boxes", "labels", "scores")})
    return coco_metrics(truths, detections, num_classes)


def require_pycocotools() -> tuple[type, type]:
    """pycocotools' ``COCO`` and ``COCOeval``, or ``ImportError`` saying how to install them."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("detection metrics need pycocotools: pip install 'plugattn[detection]'") from err
    return COCO, COCOeval


def coco_metrics(truths: list[dict], detections: list[dict], num_classes: int) -> dict[str, float]:
    """pycocotools' bbox evaluation of ``detections`` against ``truths`` (one dict each per image).

    Boxes are ``x1, y1, x2, y2`` in pixels; labels ``1..num_classes-1``. Returns :data:`COCO_NAMES` in
    [0, 1]; an area range with no ground truth gives ``nan`` (pycocotools' -1).
    """
    COCO, COCOeval = require_pycocotools()
    images, annotations, results = [], [], []
    for image_id, (truth, det) in enumerate(zip(truths, detections, strict=True)):
        images.append({"id": image_id})
        for box, label, area in zip(truth["boxes"].tolist(), truth["labels"].tolist(), truth["area"].tolist(),
                                    strict=True):  # fmt: skip
            x1, y1, x2, y2 = box
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": label,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": area, "iscrowd": 0})  # fmt: skip
        for box, label, score in zip(det["boxes"].tolist(), det["labels"].tolist(), det["scores"].tolist(),
                                     strict=True):  # fmt: skip
            x1, y1, x2, y2 = box
            results.append({"image_id": image_id, "category_id": label, "bbox": [x1, y1, x2 - x1, y2 - y1],
                            "score": score})  # fmt: skip
    if not results:  # nothing detected: every AP is 0 (pycocotools cannot load an empty result list)
        return dict.fromkeys(COCO_NAMES, 0.0)
    gt = COCO()
    gt.dataset = {"images": images, "annotations": annotations,
                  "categories": [{"id": k} for k in range(1, num_classes)]}  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and table
        gt.createIndex()
        evaluator = COCOeval(gt, gt.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = evaluator.stats[: len(COCO_NAMES)]
    return {name: (float(v) if v >= 0 else math.nan) for name, v in zip(COCO_NAMES, stats, strict=True)}


@torch.no_grad()
def evaluate_segmentation(model: nn.Module, batches: Iterable[Batch], num_classes: int) -> dict[str, Any]:
    """mIoU, pixel accuracy and IoU per class of ``model`` over ``batches`` (see the module docstring)."""
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    for images, targets in batches:
        predicted = model(images).argmax(1)  # (B, H, W)
        truth = torch.stack([t["semantic"] for t in targets])
        confusion += torch.bincount(truth.flatten() * num_classes + predicted.flatten(),
                                    minlength=num_classes**2).reshape(num_classes, num_classes)  # fmt: skip
    return segmentation_metrics(confusion.numpy())


def segmentation_metrics(confusion: np.ndarray) -> dict[str, Any]:
    """Metrics of a confusion matrix ``confusion[truth, predicted]`` (pixel counts)."""
    confusion = np.asarray(confusion, dtype=np.float64)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1] or (confusion < 0).any():
        raise ValueError(f"confusion must be a square matrix of counts, got shape {confusion.shape}")
    tp = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)  # a class in neither truth nor prediction: no IoU
    total = confusion.sum()
    return {
        "miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else math.nan,
        "miou_foreground": float(np.nanmean(iou[1:])) if np.isfinite(iou[1:]).any() else math.nan,
        "pixel_accuracy": float(tp.sum() / total) if total > 0 else math.nan,
        "iou": [float(v) for v in iou],
    }
