"""Training one run into its run directory.

:func:`train` is what ``plugattn train`` calls. Its steps, in order (:func:`_fit`): check the recipe,
find the run to continue, choose the numerics, build (data, model, optimiser, schedule), restore the
checkpoint, write the run's record, then the epoch loop, which saves a checkpoint and a metrics line
after every epoch. A resumed run continues exactly: model, optimiser, schedule, random states and data
order are those of the epoch it stopped after.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import plugattn
from plugattn.attention import kernel_status
from plugattn.data import create_loader
from plugattn.engine.checkpoint import capture_rng, restore_rng
from plugattn.engine.config import TrainConfig
from plugattn.engine.distributed import DistInfo, barrier, cleanup, init_distributed, resolve_device
from plugattn.engine.memory import allocator_state
from plugattn.engine.numerics import Numerics, resolve_numerics
from plugattn.engine.optim import build_optimizer, build_scheduler
from plugattn.engine.progressive import epoch_scale
from plugattn.engine.train import evaluate, train_one_epoch
from plugattn.runs.build import build_model, check_data_fits_recipe, check_recipe, datasets, input_kwargs
from plugattn.runs.directory import RunDirectory, check_output_dir
from plugattn.runs.environment import environment

__all__ = ["RESUME_MUTABLE", "train"]

# Fields that may differ when a run is resumed (they do not change the result).
RESUME_MUTABLE = {"device", "num_workers", "threads", "data_dir", "download"}

Log = Callable[[str], object]


def train(
    cfg: TrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    stop_after: int | None = None,
    progress: bool = True,
    log: Log = print,
) -> dict[str, Any]:
    """Train ``cfg`` into directory ``out``; returns the last epoch's metrics.

    Args:
        resume: continue the run in ``out`` from its checkpoint, exactly (model, optimiser, schedule,
            random states, data order); a run with no checkpoint yet starts from the beginning.
        stop_after: stop after this many epochs in this invocation (resume later); ``None``: run to
            ``cfg.epochs``.
        progress: show a progress bar with ETA (on a terminal; epoch lines are printed regardless).
    """
    cfg.validate()
    run = RunDirectory(check_output_dir(out))
    device = resolve_device(cfg.device)
    dist = init_distributed(device.type)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    try:
        result = _fit(
            cfg, run, device, dist, resume=resume, stop_after=stop_after, progress=progress, log=log
        )
        # Leave together: a rank that tears its gloo threads down while rank 0 is still writing its
        # checkpoint can abort ("terminate called without an active exception"). Only on success: after
        # an error the others would wait here for ever.
        barrier(dist)
        return result
    finally:
        cleanup(dist)


@dataclass
class Training:
    """What the epochs of a run work on, built from its recipe."""

    cfg: TrainConfig
    device: torch.device
    dist: DistInfo
    numerics: Numerics
    model: nn.Module  # the model whose weights are saved
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    train_loader: Any
    test_loader: Any
    meta: dict[str, Any]  # what a checkpoint needs to rebuild the model and read its data
    net: nn.Module | None = None  # what runs: the model, DDP-wrapped and/or compiled


def _fit(
    cfg: TrainConfig,
    run: RunDirectory,
    device: torch.device,
    dist: DistInfo,
    *,
    resume: bool,
    stop_after: int | None,
    progress: bool,
    log: Log,
) -> dict[str, Any]:
    """The steps of a run, in order."""
    check_recipe(cfg)
    ckpt = _previous_run(cfg, run, resume, log)
    if ckpt is not None and ckpt["epoch"] >= cfg.epochs:
        log(f"{run.path} is already complete ({ckpt['epoch']} epochs)")
        return ckpt["history"][-1]
    # Every process has looked at the directory before the first one writes to it: otherwise a slower
    # process sees the files of this very run and refuses it as "already holds a run".
    barrier(dist)
    numerics = _numerics(cfg, ckpt, device)
    if dist.is_main:
        log(numerics.describe())
        log("kernels: " + ", ".join(f"{name} {how}" for name, how in kernel_status().items()))
        log("memory: " + allocator_state())
    _set_up_process(cfg, dist)
    t = _build(cfg, device, dist, numerics, log if dist.is_main else _quiet)
    history = _restore(t, ckpt, run, log) if ckpt is not None else []
    t.net = _wrap(t)
    if dist.is_main:
        run.open(cfg.to_dict(), environment(device, dist, numerics), history)
    end_epoch = cfg.epochs if stop_after is None else min(cfg.epochs, len(history) + stop_after)
    last = _epochs(t, run, history, end_epoch, progress=progress, log=log)
    if dist.is_main and len(history) == cfg.epochs:
        run.mark_done(last)
    return last


def _quiet(*_: object) -> None:
    pass


def _previous_run(cfg: TrainConfig, run: RunDirectory, resume: bool, log: Log) -> dict[str, Any] | None:
    """The checkpoint to continue from: ``None`` for a new run; refuses to overwrite a run, or to
    resume one with another recipe."""
    if not resume:
        if run.holds_run():
            raise ValueError(
                f"--out {str(run.path)!r} already holds a run; pass --resume to continue it or choose "
                "another --out"
            )
        return None
    if not run.checkpoint.is_file():
        log(f"nothing to resume in {run.path}: starting the run")
        return None
    ckpt = run.load()
    saved, now = ckpt["config"], cfg.to_dict()
    changed = sorted(k for k in now if k not in RESUME_MUTABLE and saved.get(k) != now[k])
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in changed)
        raise ValueError(
            f"--resume: the run in {str(run.path)!r} was started with another config ({details}); "
            f"resume with the same recipe or use another --out"
        )
    return ckpt


def _numerics(cfg: TrainConfig, ckpt: dict[str, Any] | None, device: torch.device) -> Numerics:
    """The numerics this machine runs best, or, for a resumed run, those it started with."""
    saved = ckpt["meta"].get("numerics") if ckpt is not None else None
    if saved is not None:
        return Numerics(saved["amp"], saved["channels_last"], f"as the run started: {saved['reason']}")
    return resolve_numerics(cfg.amp, cfg.channels_last, device)


def _set_up_process(cfg: TrainConfig, dist: DistInfo) -> None:
    if cfg.batch_size % dist.world_size:
        raise ValueError(
            f"batch_size={cfg.batch_size} must be divisible by the number of processes ({dist.world_size})"
        )
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)


def _build(cfg: TrainConfig, device: torch.device, dist: DistInfo, numerics: Numerics, log: Log) -> Training:
    """Data, model, optimiser, schedule and loss scaler, as the recipe says."""
    train_set, test_set = datasets(cfg, log)
    # The model first: one that does not take this data says so before any loader is made (the
    # loaders draw from their own generators, so the order changes no random number).
    signal_length = getattr(train_set, "signal_length", None)
    model = build_model(
        cfg, len(train_set.classes), train_set.in_chans, **input_kwargs(cfg, signal_length)
    ).to(device)
    check_data_fits_recipe(cfg, train_set, model)

    def loader(dataset, *, train: bool, batch_size: int):
        return create_loader(
            dataset,
            batch_size=batch_size,
            train=train,
            seed=cfg.seed,
            augment=cfg.augment,
            rank=dist.rank,
            world_size=dist.world_size,
            num_workers=cfg.num_workers,
        )

    train_loader = loader(train_set, train=True, batch_size=cfg.batch_size // dist.world_size)
    test_loader = loader(test_set, train=False, batch_size=cfg.eval_batch_size)
    if numerics.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if dist.enabled and device.type == "cuda":
        # Batch statistics over the global batch, as one process would see them. SyncBatchNorm is
        # CUDA-only: on CPU each process normalises with its own shard's statistics.
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer, scheduler = _optimisation(cfg, model, steps_per_epoch=len(train_loader))
    return Training(
        cfg=cfg,
        device=device,
        dist=dist,
        numerics=numerics,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        # fp16 gradients underflow without loss scaling, on any device (torch scales on the CPU too).
        scaler=torch.amp.GradScaler(device.type) if numerics.amp == "fp16" else None,
        train_loader=train_loader,
        test_loader=test_loader,
        meta=_meta(train_set, numerics),
    )


def _optimisation(cfg: TrainConfig, model: nn.Module, *, steps_per_epoch: int):
    """The optimiser and its learning-rate schedule (stepped once per training step)."""
    optimizer = build_optimizer(
        model,
        cfg.optimizer,
        lr=cfg.lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        nesterov=cfg.nesterov,
        decay_norm_and_bias=cfg.decay_norm_and_bias,
        betas=tuple(cfg.betas),
    )
    scheduler = build_scheduler(
        optimizer,
        schedule=cfg.schedule,
        total_steps=cfg.epochs * steps_per_epoch,
        steps_per_epoch=steps_per_epoch,
        warmup_steps=round(cfg.warmup_epochs * steps_per_epoch),
        milestones=cfg.milestones,
        gamma=cfg.gamma,
        min_lr_ratio=cfg.min_lr_ratio,
    )
    return optimizer, scheduler


def _meta(train_set, numerics: Numerics) -> dict[str, Any]:
    """What a checkpoint needs besides its weights to rebuild the model and read data as it did."""
    return {
        "num_classes": len(train_set.classes),
        "in_chans": train_set.in_chans,
        "classes": list(train_set.classes),
        "mean": list(train_set.mean),
        "std": list(train_set.std),
        "image_size": getattr(train_set, "image_size", None),
        "signal_length": getattr(train_set, "signal_length", None),  # samples per trial, for signals
        "numerics": dataclasses.asdict(numerics),
        "plugattn": plugattn.__version__,
    }


def _restore(t: Training, ckpt: dict[str, Any], run: RunDirectory, log: Log) -> list[dict[str, Any]]:
    """Put the run back as it was after its last saved epoch; returns the history of its epochs."""
    t.model.load_state_dict(ckpt["model"])
    t.optimizer.load_state_dict(ckpt["optimizer"])
    t.scheduler.load_state_dict(ckpt["scheduler"])
    if t.scaler is not None and ckpt.get("scaler"):
        t.scaler.load_state_dict(ckpt["scaler"])
    restore_rng(ckpt["rng"])
    log(f"resuming {run.path} after epoch {ckpt['epoch']} of {t.cfg.epochs}")
    return list(ckpt["history"])


def _wrap(t: Training) -> nn.Module:
    """What the epochs run: the model, in DistributedDataParallel over several processes, compiled
    when the recipe asks."""
    net = t.model
    if t.dist.enabled:
        device_ids = [t.device.index] if t.device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(t.model, device_ids=device_ids)
    return torch.compile(net) if t.cfg.compile else net


def _epochs(
    t: Training,
    run: RunDirectory,
    history: list[dict[str, Any]],
    end_epoch: int,
    *,
    progress: bool,
    log: Log,
) -> dict[str, Any]:
    """Train epochs ``len(history) .. end_epoch - 1``; after each, save the checkpoint and its line."""
    steps, start = len(t.train_loader), len(history)
    bar = _progress_bar(t.cfg.epochs * steps, start * steps, progress and t.dist.is_main)
    clock = time.perf_counter() - (history[-1]["elapsed_seconds"] if history else 0.0)
    last: dict[str, Any] = history[-1] if history else {}
    try:
        for epoch in range(start, end_epoch):
            last = _epoch(t, epoch, bar)
            last["elapsed_seconds"] = time.perf_counter() - clock
            history.append(last)
            if t.dist.is_main:
                run.save(_state(t, history), last)
                if bar is not None:
                    bar.clear()
                log(_epoch_line(t.cfg, last))
    finally:
        if bar is not None:
            bar.close()
    return last


def _epoch(t: Training, epoch: int, bar) -> dict[str, Any]:
    """One epoch of training, and the evaluation when the recipe asks for one after it."""
    cfg = t.cfg
    t.train_loader.set_epoch(epoch)

    def on_step(loss: float) -> None:
        if bar is not None:
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss:.3f}", refresh=False)

    stats = train_one_epoch(
        t.net,
        t.train_loader,
        t.optimizer,
        t.scheduler,
        device=t.device,
        amp=t.numerics.amp,
        channels_last=t.numerics.channels_last,
        label_smoothing=cfg.label_smoothing,
        scaler=t.scaler,
        scale=epoch_scale(epoch, cfg.epochs, cfg.progressive_resize),
        dist=t.dist,
        on_step=on_step,
    )
    metrics = {"epoch": epoch + 1, **stats}
    if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
        ev = evaluate(
            t.net,
            t.test_loader,
            num_classes=t.meta["num_classes"],
            device=t.device,
            amp=t.numerics.amp,
            channels_last=t.numerics.channels_last,
            flip=cfg.test_flip,
            dist=t.dist,
        )
        metrics.update(test_loss=ev["loss"], test_top1=ev["top1"], test_top5=ev["top5"])
    return metrics


def _state(t: Training, history: list[dict[str, Any]]) -> dict[str, Any]:
    """The checkpoint after the last epoch of ``history``: everything an exact resume needs."""
    return {
        "model": t.model.state_dict(),
        "optimizer": t.optimizer.state_dict(),
        "scheduler": t.scheduler.state_dict(),
        "scaler": t.scaler.state_dict() if t.scaler is not None else None,
        "epoch": len(history),
        "history": history,
        "config": t.cfg.to_dict(),
        "meta": t.meta,
        "rng": capture_rng(),
    }


def _epoch_line(cfg: TrainConfig, m: dict[str, Any]) -> str:
    tested = (
        f"test_top1 {m['test_top1']:.2f}%  test_top5 {m['test_top5']:.2f}%  "
        if "test_top1" in m
        else "not evaluated  "
    )
    return (
        f"epoch {m['epoch']}/{cfg.epochs}  train_loss {m['train_loss']:.4f}  {tested}"
        f"lr {m['lr']:.4g}  {m['images_per_s']:.0f} img/s  elapsed {m['elapsed_seconds']:.0f}s"
    )


def _progress_bar(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # the progress bar is an extra; the epoch lines still report progress
        return None
    # disable=None: tqdm's own rule, no bar when stderr is not a terminal (logs keep the epoch lines).
    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, leave=False, disable=None)
