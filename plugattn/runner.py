"""The wiring of one run: dataset → batch augmentation → model (backbone + attention) → engine →
metrics, checkpoints. ``train`` and ``evaluate_checkpoint`` are what the CLI calls; ``load_model``
gives a trained model back.

Files of a run directory:
    config.yaml      the resolved config (re-loadable with ``--config``)
    env.json         versions, device, threads, git revision, command line
    metrics.jsonl    one JSON object per epoch (rebuilt from the checkpoint on resume)
    last.pt          the checkpoint (written atomically after each epoch; ``weights_only`` loadable)
    done             written when the last epoch is finished
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import random
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import plugattn
from plugattn.attention import attention_entry
from plugattn.data import create_dataset, create_loader, dataset_entry
from plugattn.engine.checkpoint import (
    atomic_save,
    capture_rng,
    load_checkpoint,
    remove_stale_temps,
    restore_rng,
)
from plugattn.engine.config import TrainConfig
from plugattn.engine.distributed import DistInfo, barrier, cleanup, init_distributed
from plugattn.engine.numerics import Numerics, native_bf16, resolve_numerics
from plugattn.engine.optim import build_optimizer, build_scheduler
from plugattn.engine.progressive import epoch_scale
from plugattn.engine.train import evaluate, train_one_epoch
from plugattn.models import create_model, model_entry

__all__ = ["evaluate_checkpoint", "load_model", "train"]

CHECKPOINT = "last.pt"
# Fields that may differ when a run is resumed (they do not change the result).
RESUME_MUTABLE = {"device", "num_workers", "threads", "data_dir", "download"}


def resolve_device(name: str) -> torch.device:
    if not (isinstance(name, str) and re.fullmatch(r"auto|cpu|cuda(:\d+)?", name)):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for, but torch sees no CUDA device")
    device = torch.device(name)
    count = torch.cuda.device_count() if device.type == "cuda" else 0
    if device.index is not None and device.index >= count:
        raise ValueError(
            f"device {name!r} was asked for, but torch sees {count} CUDA device(s): cuda:0..{count - 1}"
        )
    return device


def check_output_dir(path: str | Path, argument: str = "--out") -> Path:
    """``path`` can hold a run's files: a directory, or a place where one can be made and written.

    Checked before any work, so a wrong ``--out`` costs a second, not a trained epoch, and nothing is
    written anywhere when it is refused.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{argument} {str(path)!r} exists and is not a directory; name a directory")
    parent = path
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{argument} {str(path)!r} cannot be made: {str(parent)!r} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{argument} {str(path)!r}: no permission to write in {str(parent)!r}")
    return path


def _git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment(device: torch.device, dist: DistInfo, numerics: Numerics) -> dict[str, Any]:
    """What produced a result: versions, hardware, numerics, threads, revision, command line."""
    return {
        "plugattn": plugattn.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": native_bf16(device),
        "numerics": dataclasses.asdict(numerics),
        "world_size": dist.world_size,
        "git_revision": _git_revision(),
        "command": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _write_yaml(path: Path, data: dict[str, Any]) -> None:
    try:
        import yaml

        text = yaml.safe_dump(data, sort_keys=False)
    except ImportError:  # JSON is valid YAML
        text = json.dumps(data, indent=2)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _build_model(cfg: TrainConfig, num_classes: int, in_chans: int, **extra: Any) -> nn.Module:
    kwargs = {**cfg.model_kwargs, **extra}
    if cfg.attention_kwargs:
        kwargs["attn_kwargs"] = dict(cfg.attention_kwargs)
    if cfg.zero_init_residual:
        kwargs["zero_init_residual"] = True
    return create_model(
        cfg.model, attention=cfg.attention, num_classes=num_classes, in_chans=in_chans, **kwargs
    )


def _datasets(cfg: TrainConfig, log=print):
    """The training split and the split evaluated during training, with one class list: label ``k``
    means the same class in both (a non-training split may lack a class; it may not add one)."""
    test_split = "val" if cfg.data == "imagefolder" else "test"
    options = dict(root=cfg.data_dir, download=cfg.download, **cfg.data_options)
    train_set = create_dataset(cfg.data, "train", **options)
    if "classes" in dataset_entry(cfg.data).options:
        options["classes"] = list(train_set.classes)
    test_set = create_dataset(cfg.data, test_split, **options)
    check_same_classes(list(train_set.classes), test_set, f"{cfg.data}/{test_split}", log)
    return train_set, test_set


def check_same_classes(classes: list[str], dataset, where: str, log=print) -> None:
    """``dataset`` labels its samples with ``classes`` (the training split's); say which have no sample."""
    if list(dataset.classes) != classes:
        raise ValueError(
            f"{where} names its classes {list(dataset.classes)}, but the model's classes are {classes}: "
            "labels would change meaning; evaluate on data with the training classes"
        )
    present = set(torch.as_tensor(dataset.labels).unique().tolist())
    absent = [c for k, c in enumerate(classes) if k not in present]
    if absent:
        log(f"note: {where} has no samples of class(es) {absent}; they are not scored")


def _check_resumable(saved: dict[str, Any], cfg: TrainConfig, out: Path) -> None:
    now = cfg.to_dict()
    changed = sorted(k for k in now if k not in RESUME_MUTABLE and saved.get(k) != now[k])
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in changed)
        raise ValueError(
            f"--resume: the run in {str(out)!r} was started with another config ({details}); "
            f"resume with the same recipe or use another --out"
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


def train(
    cfg: TrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    stop_after: int | None = None,
    progress: bool = True,
    log=print,
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
    out = check_output_dir(out)
    device = resolve_device(cfg.device)
    dist = init_distributed(device.type)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    try:
        result = _train(cfg, out, device, dist, resume, stop_after, progress, log)
        # Leave together: a rank that tears its gloo threads down while rank 0 is still writing its
        # checkpoint can abort ("terminate called without an active exception"). Only on success: after
        # an error the others would wait here for ever.
        barrier(dist)
        return result
    finally:
        cleanup(dist)


def _train(cfg, out, device, dist, resume, stop_after, progress, log) -> dict[str, Any]:
    # Names first: a typo should fail in a second, not after the dataset has been read.
    model_entry(cfg.model)
    if cfg.attention is not None:
        attention_entry(cfg.attention)
    # The model's options and the attention's widths too: built on the meta device (no memory, no
    # time), a bad model_kwargs or attention_kwargs fails before the dataset is read.
    _build_model(cfg, num_classes=2, in_chans=1, device="meta")
    ckpt_path = out / CHECKPOINT
    ckpt = None
    if resume:
        if ckpt_path.is_file():
            ckpt = load_checkpoint(ckpt_path)
            _check_resumable(ckpt["config"], cfg, out)
            if ckpt["epoch"] >= cfg.epochs:
                log(f"{out} is already complete ({ckpt['epoch']} epochs)")
                return ckpt["history"][-1]
        else:
            log(f"nothing to resume in {out}: starting the run")
    elif ckpt_path.exists() or (out / "metrics.jsonl").exists():
        raise ValueError(
            f"--out {str(out)!r} already holds a run; pass --resume to continue it or choose another --out"
        )
    # Every process has looked at ``out`` before the first one writes to it: otherwise a slower process
    # sees the files of this very run and refuses it as "already holds a run" (or reads a newer checkpoint).
    barrier(dist)
    saved = ckpt["meta"].get("numerics") if ckpt is not None else None
    if saved is not None:  # a resumed run computes as it started, whatever this machine would choose
        numerics = Numerics(saved["amp"], saved["channels_last"], f"as the run started: {saved['reason']}")
    else:
        numerics = resolve_numerics(cfg.amp, cfg.channels_last, device)
    if dist.is_main:
        log(numerics.describe())
    if cfg.batch_size % dist.world_size:
        raise ValueError(
            f"batch_size={cfg.batch_size} must be divisible by the number of processes ({dist.world_size})"
        )
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)

    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    train_set, test_set = _datasets(cfg, log if dist.is_main else (lambda *_: None))

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
    num_classes = len(train_set.classes)
    model = _build_model(cfg, num_classes, train_set.in_chans).to(device)
    if numerics.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if dist.enabled and device.type == "cuda":
        # Batch statistics over the global batch, as one process would see them. SyncBatchNorm is
        # CUDA-only: on CPU each process normalises with its own shard's statistics.
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    steps_per_epoch = len(train_loader)
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
    # fp16 gradients underflow without loss scaling, on any device (torch scales on the CPU too).
    scaler = torch.amp.GradScaler(device.type) if numerics.amp == "fp16" else None

    start_epoch, history = 0, []
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start_epoch, history = ckpt["epoch"], list(ckpt["history"])
        restore_rng(ckpt["rng"])
        log(f"resuming {out} after epoch {start_epoch} of {cfg.epochs}")

    meta = {
        "num_classes": num_classes,
        "in_chans": train_set.in_chans,
        "classes": list(train_set.classes),
        "mean": list(train_set.mean),
        "std": list(train_set.std),
        "image_size": getattr(train_set, "image_size", None),
        "numerics": dataclasses.asdict(numerics),
        "plugattn": plugattn.__version__,
    }
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(ckpt_path)  # a writer killed mid-save leaves its temp file behind
        _write_yaml(out / "config.yaml", cfg.to_dict())
        (out / "env.json").write_text(json.dumps(environment(device, dist, numerics), indent=2))
        # The checkpoint is the record: rebuild the log from it (drops an epoch logged after it).
        lines = "".join(json.dumps(h) + "\n" for h in history)
        tmp = out / ".metrics.jsonl.tmp"
        tmp.write_text(lines)
        os.replace(tmp, out / "metrics.jsonl")

    net = model
    if dist.enabled:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if cfg.compile:
        net = torch.compile(net)

    end_epoch = cfg.epochs if stop_after is None else min(cfg.epochs, start_epoch + stop_after)
    bar = _progress_bar(
        cfg.epochs * steps_per_epoch, start_epoch * steps_per_epoch, progress and dist.is_main
    )
    run_start = time.perf_counter() - (history[-1]["elapsed_seconds"] if history else 0.0)
    last: dict[str, Any] = history[-1] if history else {}
    try:
        for epoch in range(start_epoch, end_epoch):
            train_loader.set_epoch(epoch)

            def on_step(loss: float, bar=bar, epoch=epoch) -> None:
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(epoch=epoch + 1, loss=f"{loss:.3f}", refresh=False)

            stats = train_one_epoch(
                net,
                train_loader,
                optimizer,
                scheduler,
                device=device,
                amp=numerics.amp,
                channels_last=numerics.channels_last,
                label_smoothing=cfg.label_smoothing,
                scaler=scaler,
                scale=epoch_scale(epoch, cfg.epochs, cfg.progressive_resize),
                dist=dist,
                on_step=on_step,
            )
            last = {"epoch": epoch + 1, **stats}
            if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
                ev = evaluate(
                    net,
                    test_loader,
                    num_classes=num_classes,
                    device=device,
                    amp=numerics.amp,
                    channels_last=numerics.channels_last,
                    flip=cfg.test_flip,
                    dist=dist,
                )
                last.update(test_loss=ev["loss"], test_top1=ev["top1"], test_top5=ev["top5"])
            last["elapsed_seconds"] = time.perf_counter() - run_start
            history.append(last)
            if dist.is_main:
                state = {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else None,
                    "epoch": epoch + 1,
                    "history": history,
                    "config": cfg.to_dict(),
                    "meta": meta,
                    "rng": capture_rng(),
                }
                atomic_save(state, ckpt_path)
                with open(out / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(last) + "\n")
                if bar is not None:
                    bar.clear()
                tested = (
                    f"test_top1 {last['test_top1']:.2f}%  test_top5 {last['test_top5']:.2f}%  "
                    if "test_top1" in last
                    else "not evaluated  "
                )
                log(
                    f"epoch {epoch + 1}/{cfg.epochs}  train_loss {stats['train_loss']:.4f}  {tested}"
                    f"lr {stats['lr']:.4g}  {stats['images_per_s']:.0f} img/s  "
                    f"elapsed {last['elapsed_seconds']:.0f}s"
                )
    finally:
        if bar is not None:
            bar.close()
    if dist.is_main and len(history) == cfg.epochs:
        (out / "done").write_text(json.dumps(last) + "\n")
    return last


def _model_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    cfg = TrainConfig.from_dict(ckpt["config"])
    meta = ckpt.get("meta", {})
    model = _build_model(cfg, meta["num_classes"], meta["in_chans"])
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as err:
        raise ValueError(f"the checkpoint does not fit {cfg.model} + {cfg.attention}: {err}") from err
    return model


def load_model(checkpoint: str | Path, *, map_location: str | torch.device = "cpu") -> nn.Module:
    """The trained model of a plugattn checkpoint (``DIR/last.pt`` or the ``DIR``), in eval mode."""
    path = Path(checkpoint)
    if path.is_dir():
        path = path / CHECKPOINT
    model = _model_from_checkpoint(load_checkpoint(path))
    return model.to(map_location).eval()


def evaluate_checkpoint(
    checkpoint: str | Path,
    *,
    data: str | None = None,
    data_dir: str | None = None,
    split: str = "test",
    out: str | Path | None = None,
    batch_size: int = 500,
    device: str = "auto",
) -> dict[str, Any]:
    """Top-1/top-5, per-class accuracy and the confusion matrix of a checkpoint on a dataset split.

    Writes ``confusion.csv``, ``per_class.csv``, ``eval.json`` and (with matplotlib) ``confusion.png``
    to ``out`` (default: the checkpoint's directory).
    """
    path = Path(checkpoint)
    if path.is_dir():
        path = path / CHECKPOINT
    dev = resolve_device(device)
    if out is not None:
        check_output_dir(out)
    ckpt = load_checkpoint(path)
    cfg = TrainConfig.from_dict(ckpt["config"])
    meta = ckpt["meta"]
    same_data = data is None or data == cfg.data
    data = data or cfg.data
    # The training run's dataset options (e.g. synthetic's num_samples) belong to its dataset only.
    options = dict(cfg.data_options) if same_data else {}
    if "classes" in dataset_entry(data).options:
        options["classes"] = list(meta["classes"])
    dataset = create_dataset(data, split, root=data_dir or (cfg.data_dir if same_data else None), **options)
    if dataset.in_chans != meta["in_chans"]:
        raise ValueError(
            f"the checkpoint was trained on {meta['in_chans']}-channel images; "
            f"{data}/{split} has {dataset.in_chans}-channel images"
        )
    check_same_classes(list(meta["classes"]), dataset, f"{data}/{split}")
    model = _model_from_checkpoint(ckpt).to(dev)
    loader = create_loader(dataset, batch_size=batch_size, train=False, seed=cfg.seed, augment=cfg.augment)
    ev = evaluate(model, loader, num_classes=meta["num_classes"], device=dev, amp="none", flip=cfg.test_flip)
    confusion = ev.pop("confusion")
    per_class = (100.0 * confusion.diag() / confusion.sum(1).clamp(min=1)).tolist()
    classes = list(dataset.classes)
    out = Path(out) if out is not None else path.parent
    out.mkdir(parents=True, exist_ok=True)
    from plugattn.report import plot_confusion, write_csv

    write_csv(
        out / "confusion.csv",
        ["true \\ predicted", *classes],
        [[c, *row] for c, row in zip(classes, confusion.tolist(), strict=True)],
    )
    write_csv(
        out / "per_class.csv",
        ["class", "accuracy_percent", "samples"],
        [[c, f"{a:.2f}", n] for c, a, n in zip(classes, per_class, confusion.sum(1).tolist(), strict=True)],
    )
    result = {
        **ev,
        "per_class": dict(zip(classes, per_class, strict=True)),
        "checkpoint": str(path),
        "data": data,
        "split": split,
    }
    (out / "eval.json").write_text(json.dumps(result, indent=2))
    plot_confusion(
        confusion, classes, out / "confusion.png", title=f"{cfg.model} + {cfg.attention} on {data}/{split}"
    )
    return result
