"""What a recipe builds before any epoch: its two data splits with one class list, and its model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from plugattn.attention import attention_entry
from plugattn.data import create_dataset, dataset_entry
from plugattn.engine.config import TrainConfig
from plugattn.models import create_model, model_entry

__all__ = ["build_model", "check_recipe", "check_same_classes", "datasets"]


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


def check_recipe(cfg: TrainConfig) -> None:
    """Fail in a second, not after the dataset has been read: the names, then the model's options and
    the attention's widths (the model is built on the meta device: no memory, no time)."""
    model_entry(cfg.model)
    if cfg.attention is not None:
        attention_entry(cfg.attention)
    build_model(cfg, num_classes=2, in_chans=1, device="meta")


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
