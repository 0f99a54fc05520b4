"""What a recipe builds before any epoch: its two data splits with one class list, and its model."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from plugattn.attention import attention_entry
from plugattn.data import create_dataset, dataset_entry
from plugattn.engine.config import TrainConfig
from plugattn.models import create_model, model_entry

__all__ = [
    "build_model",
    "check_data_fits_recipe",
    "check_recipe",
    "check_same_classes",
    "datasets",
    "input_kwargs",
]


def build_model(cfg: TrainConfig, num_classes: int, in_chans: int, **extra: Any) -> nn.Module:
    """``cfg``'s backbone with its attention, for ``num_classes`` classes of ``in_chans``-channel images.

    The layers every variant shares (stem, convolutions, norms, head) start from the same weights for
    the same ``cfg.seed`` whatever the attention module: they are drawn, from a generator seeded with
    ``cfg.seed`` alone, for the plain backbone and copied into this one. So runs of a comparison that
    share a seed differ only in their attention modules (whose own weights come from the global random
    stream), and a difference paired by seed measures the module, not a luckier initialisation.
    """
    kwargs = {**cfg.model_kwargs, **extra}
    if cfg.zero_init_residual:
        kwargs["zero_init_residual"] = True
    with torch.random.fork_rng(devices=[]):  # the global stream continues as if nothing was drawn
        torch.manual_seed(cfg.seed)
        plain = create_model(cfg.model, attention=None, num_classes=num_classes, in_chans=in_chans, **kwargs)
    if cfg.attention is None:
        return plain
    if cfg.attention_kwargs:
        kwargs["attn_kwargs"] = dict(cfg.attention_kwargs)
    model = create_model(
        cfg.model, attention=cfg.attention, num_classes=num_classes, in_chans=in_chans, **kwargs
    )
    if kwargs.get("device") != "meta":
        shared = model.load_state_dict(plain.state_dict(), strict=False)
        if shared.unexpected_keys:  # every backbone tensor has its place in the model with attention
            raise RuntimeError(f"{cfg.model}: backbone tensors without a place: {shared.unexpected_keys[:4]}")
    return model


_LAYOUTS = {1: "signals (B, C, L)", 2: "images (B, C, H, W)", 3: "volumes (B, C, D, H, W)"}


def input_kwargs(cfg: TrainConfig, signal_length: int | None) -> dict[str, Any]:
    """What the model needs to know of its input besides its channels: ``n_times`` for a model whose
    classifier is sized for the trial length (EEGNet), taken from the data unless the recipe sets it."""
    accepted = inspect.signature(model_entry(cfg.model).builder).parameters
    if "n_times" not in accepted or "n_times" in cfg.model_kwargs:
        return {}
    if signal_length is None:
        raise ValueError(
            f"model {cfg.model} takes {_LAYOUTS[1]}, but {cfg.data} holds images: choose a model for "
            "images (e.g. resnet20), or a signal dataset (e.g. eeg-blink)"
        )
    return {"n_times": signal_length}


def check_data_fits_recipe(cfg: TrainConfig, dataset, model: nn.Module) -> None:
    """The model takes the data's kind of input, and image-only parts of a recipe refuse signals, each
    with the field to change (not a shape error deep in the first convolution): resizing and flipping an
    EEG trial have no meaning."""
    data_dims = 1 if getattr(dataset, "signal_length", None) is not None else 2
    model_dims = getattr(model, "spatial_dims", 2)
    if model_dims != data_dims:
        fits = "eegnet or resnet18_1d" if data_dims == 1 else "resnet20 or another image model"
        raise ValueError(
            f"model {cfg.model} takes {_LAYOUTS[model_dims]}, but {cfg.data} holds {_LAYOUTS[data_dims]}: "
            f"choose a model for {_LAYOUTS[data_dims].split()[0]} (e.g. {fits})"
        )
    if data_dims == 2:
        return
    if cfg.progressive_resize:
        raise ValueError(
            f"progressive_resize={cfg.progressive_resize} resizes images; {cfg.data} holds signals "
            "(B, C, L): set progressive_resize: {} (or use the dataset's preset)"
        )
    if cfg.test_flip:
        raise ValueError(
            f"test_flip mirrors images; {cfg.data} holds signals (B, C, L): set test_flip: false "
            "(or use the dataset's preset)"
        )


def check_recipe(cfg: TrainConfig) -> None:
    """Fail in a second, not after the dataset has been read: the names, then the model's options and
    the attention's widths (the model is built on the meta device: no memory, no time)."""
    model_entry(cfg.model)
    if cfg.attention is not None:
        attention_entry(cfg.attention)
    build_model(cfg, num_classes=2, in_chans=1, device="meta", **input_kwargs(cfg, 1024))


def datasets(cfg: TrainConfig, log: Callable[[str], object] = print):
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


def check_same_classes(classes: list[str], dataset, where: str, log: Callable[[str], object] = print) -> None:
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
