"""A trained run's model, and its evaluation on a dataset split (``plugattn eval``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from plugattn.data import create_dataset, create_loader, dataset_entry
from plugattn.engine.checkpoint import load_checkpoint
from plugattn.engine.config import TrainConfig
from plugattn.engine.distributed import resolve_device
from plugattn.engine.numerics import native_bf16
from plugattn.engine.train import evaluate
from plugattn.report import write_evaluation
from plugattn.runs.build import build_model, check_same_classes, input_kwargs
from plugattn.runs.directory import RunDirectory, check_output_dir

__all__ = ["checkpoint_file", "evaluate_checkpoint", "input_shape", "load_model", "model_from_checkpoint"]


def load_model(checkpoint: str | Path, *, map_location: str | torch.device = "cpu") -> nn.Module:
    """The trained model of a plugattn checkpoint (``DIR/last.pt`` or the ``DIR``), in eval mode."""
    model = model_from_checkpoint(load_checkpoint(checkpoint_file(checkpoint)))
    return model.to(map_location).eval()


def model_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    """The model a loaded checkpoint describes, with its weights."""
    cfg = TrainConfig.from_dict(ckpt["config"])
    meta = ckpt.get("meta", {})
    model = build_model(
        cfg, meta["num_classes"], meta["in_chans"], **input_kwargs(cfg, meta.get("signal_length"))
    )
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as err:
        raise ValueError(f"the checkpoint does not fit {cfg.model} + {cfg.attention}: {err}") from err
    return model


def _run_numerics(meta: dict[str, Any], device: torch.device) -> tuple[str, bool]:
    """The numerics the run evaluated in (its checkpoint's ``meta["numerics"]``), so that the logged
    accuracy is reproduced: bf16 autocast only where ``device`` runs bf16 natively (emulated it is 10-20×
    slower), float32 otherwise and for checkpoints that do not record them."""
    saved = meta.get("numerics") or {}
    amp = saved.get("amp", "none")
    if amp == "bf16" and not native_bf16(device):
        amp = "none"
    return amp, bool(saved.get("channels_last", False))


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
    """Top-1/top-5, per-class accuracy and the confusion matrix of a checkpoint on a dataset split, in the
    numerics the run evaluated in (bf16 autocast where the run used it and this device runs it natively).

    Writes ``confusion.csv``, ``per_class.csv``, ``eval.json`` and (with matplotlib) ``confusion.png``
    to ``out`` (default: the checkpoint's directory).
    """
    path = checkpoint_file(checkpoint)
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
            f"the checkpoint was trained on {meta['in_chans']}-channel inputs; "
            f"{data}/{split} has {dataset.in_chans} channels"
        )
    check_same_classes(list(meta["classes"]), dataset, f"{data}/{split}")
    model = model_from_checkpoint(ckpt).to(dev)
    loader = create_loader(dataset, batch_size=batch_size, train=False, seed=cfg.seed, augment=cfg.augment)
    amp, channels_last = _run_numerics(meta, dev)
    ev = evaluate(
        model, loader, num_classes=meta["num_classes"], device=dev, amp=amp, channels_last=channels_last,
        flip=cfg.test_flip,
    )  # fmt: skip
    confusion = ev.pop("confusion")
    per_class = (100.0 * confusion.diag() / confusion.sum(1).clamp(min=1)).tolist()
    classes = list(dataset.classes)
    result = {
        **ev,
        "per_class": dict(zip(classes, per_class, strict=True)),
        "checkpoint": str(path),
        "data": data,
        "split": split,
    }
    write_evaluation(
        Path(out) if out is not None else path.parent,
        result,
        confusion,
        classes,
        title=f"{cfg.model} + {cfg.attention} on {data}/{split}",
    )
    return result


def checkpoint_file(checkpoint: str | Path) -> Path:
    """A run directory's checkpoint, or the file named."""
    path = Path(checkpoint)
    return path / RunDirectory.CHECKPOINT if path.is_dir() else path


def input_shape(ckpt: dict[str, Any]) -> tuple[int, ...]:
    """``(C, H, W)`` of the images a checkpoint's model was trained on (after augmentation's crop), or
    ``(C, L)`` of its signals."""
    cfg, meta = TrainConfig.from_dict(ckpt["config"]), ckpt["meta"]
    if meta.get("signal_length"):
        return (meta["in_chans"], meta["signal_length"])
    size = cfg.augment.get("size") or meta.get("image_size")
    if isinstance(size, (list, tuple)):
        return (meta["in_chans"], *size)
    return (meta["in_chans"], size, size)
