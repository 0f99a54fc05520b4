"""One training epoch and one evaluation, each returning a dict of plain numbers."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from plugattn.engine.distributed import DistInfo, all_reduce_sum
from plugattn.engine.progressive import resize_batch

__all__ = ["autocast_context", "evaluate", "train_one_epoch"]

SINGLE_PROCESS = DistInfo()
AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_context(device: torch.device, amp: str):
    """``torch.autocast`` for ``amp`` in {"none", "bf16", "fp16"} on ``device``'s type."""
    dtype = AMP_DTYPES[amp]
    if dtype is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def _to_device(x: torch.Tensor, y: torch.Tensor, device: torch.device, channels_last: bool):
    x = x.to(device, non_blocking=True)
    if channels_last and x.dim() in (4, 5):  # signals (B, C, L) have no channels_last layout
        x = x.contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
    return x, y.to(device, non_blocking=True)


def train_one_epoch(
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    *,
    device: torch.device,
    amp: str = "none",
    channels_last: bool = False,
    label_smoothing: float = 0.0,
    scaler: torch.amp.GradScaler | None = None,
    scale: float = 1.0,
    dist: DistInfo = SINGLE_PROCESS,
    on_step: Callable[[float], None] | None = None,
) -> dict[str, float]:
    """Train ``model`` for one pass over ``loader`` (the scheduler steps once per batch).

    ``scale`` < 1 trains on batches downscaled by it (progressive resizing, see
    :mod:`plugattn.engine.progressive`).

    Returns ``train_loss`` (mean cross-entropy over the epoch's samples, all ranks), ``train_top1``
    (percent), ``lr`` (at the end of the epoch), ``images_per_s`` (all ranks together) and
    ``train_seconds``. Raises ``FloatingPointError`` when the loss stops being finite.
    """
    model.train()
    totals = torch.zeros(3, dtype=torch.float64)  # loss sum, correct, samples
    start = time.perf_counter()
    for step, (x, y) in enumerate(loader):
        x, y = _to_device(resize_batch(x, scale), y, device, channels_last)
        with autocast_context(device, amp):
            logits = model(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        scheduler.step()
        value = loss.item()
        if not math.isfinite(value):
            raise FloatingPointError(f"the training loss became {value} at step {step} of the epoch")
        n = y.numel()
        totals += torch.tensor([value * n, (logits.argmax(1) == y).sum().item(), n], dtype=torch.float64)
        if on_step is not None:
            on_step(value)
    seconds = time.perf_counter() - start
    totals = all_reduce_sum(totals, dist)
    loss_sum, correct, samples = totals.tolist()
    return {
        "train_loss": loss_sum / max(samples, 1),
        "train_top1": 100.0 * correct / max(samples, 1),
        "lr": optimizer.param_groups[0]["lr"],
        "images_per_s": samples / seconds if seconds > 0 else float("nan"),
        "train_seconds": seconds,
    }


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    *,
    num_classes: int,
    device: torch.device,
    amp: str = "none",
    channels_last: bool = False,
    flip: bool = False,
    dist: DistInfo = SINGLE_PROCESS,
) -> dict:
    """Evaluate ``model`` on every sample of ``loader`` (each counted once across ranks).

    ``flip``: test-time augmentation by horizontal flip — the logits of each image and of its mirror
    image are averaged (for models trained with flips, where both views are in-distribution).

    Returns ``loss``, ``top1`` and ``top5`` (percent; top-k with k = min(5, classes)), ``samples``,
    and ``confusion``: a ``(num_classes, num_classes)`` int64 tensor, rows = true class, columns =
    predicted class.
    """
    model.eval()
    k = min(5, num_classes)
    totals = torch.zeros(4, dtype=torch.float64)  # loss sum, top1, top-k, samples
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.int64)
    for x, y in loader:
        x, y = _to_device(x, y, device, channels_last)
        with autocast_context(device, amp):
            logits = model(x).float()
            if flip:
                logits = 0.5 * (logits + model(x.flip(3)).float())
        loss = F.cross_entropy(logits, y, reduction="sum")
        top = logits.topk(k, dim=1).indices  # (B, k)
        hit = top == y[:, None]
        totals += torch.tensor(
            [loss.item(), hit[:, 0].sum().item(), hit.any(1).sum().item(), y.numel()], dtype=torch.float64
        )
        confusion += torch.bincount((y * num_classes + top[:, 0]).cpu(), minlength=num_classes**2)
    totals = all_reduce_sum(totals, dist)
    confusion = all_reduce_sum(confusion, dist)
    loss_sum, top1, topk, samples = totals.tolist()
    samples = max(samples, 1)
    return {
        "loss": loss_sum / samples,
        "top1": 100.0 * top1 / samples,
        "top5": 100.0 * topk / samples,
        "samples": int(samples),
        "confusion": confusion.reshape(num_classes, num_classes),
    }
