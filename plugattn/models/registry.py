"""The model registry: one strict table from model names to a builder and its configuration.

A named model is configuration, not code: each entry is a builder class (e.g. :class:`ResNet`) and the
keyword arguments that make the variant (depths, widths, stem, ...). ``create_model`` merges the user's
keywords over them, so ``create_model("resnet20", shortcut="B")`` is the same builder with one option
changed.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from torch import nn

from plugattn._checks import check_int
from plugattn._registry import Registry
from plugattn.attention.registry import AttentionSpec

__all__ = ["ModelEntry", "create_model", "list_models", "model_entry", "register_model"]


@dataclass(frozen=True)
class ModelEntry:
    """What the registry knows of one named model."""

    name: str
    builder: Callable[..., nn.Module]
    config: Mapping[str, Any]
    num_classes: int
    paper: str
    family: str = field(default="")


_REGISTRY: Registry[ModelEntry] = Registry("model")


def register_model(
    name: str,
    builder: Callable[..., nn.Module],
    config: Mapping[str, Any],
    *,
    num_classes: int,
    paper: str,
    family: str = "",
) -> ModelEntry:
    """Add ``name`` → ``builder(**config)``; a name registered twice raises ``ValueError``."""
    check_int("num_classes", num_classes, minimum=1)
    entry = ModelEntry(
        name=name,
        builder=builder,
        config=MappingProxyType(dict(config)),
        num_classes=num_classes,
        paper=paper,
        family=family,
    )
    taken = _REGISTRY.get(name)
    return _REGISTRY.register(name, entry, owner=(taken.family or "no family") if taken is not None else "")


def list_models() -> list[str]:
    """The registered model names, sorted."""
    return _REGISTRY.names()


def model_entry(name: str) -> ModelEntry:
    """The registry entry of ``name``; unknown names raise ``ValueError`` listing the known ones."""
    return _REGISTRY.lookup(name)


def create_model(
    name: str,
    *,
    attention: AttentionSpec = None,
    position: str | None = None,
    stages: Sequence[int] | None = None,
    num_classes: int | None = None,
    in_chans: int = 3,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model, optionally with attention in its blocks.

    Args:
        name: a registered model (``list_models()``).
        attention: a registered attention name, a module class, a callable ``channels -> nn.Module``,
            or ``None``/``"none"`` (no attention).
        position: where in each block (:data:`plugattn.models.placement.POSITIONS`); ``None`` puts
            each module at its paper's place (its registry entry's position, ``"end"`` if unregistered).
        stages: 0-based indices of the stages whose blocks get attention; ``None`` means all.
        num_classes: classifier outputs; ``None`` gives the model's default (10 for the CIFAR models,
            1000 for the ImageNet-layout ones).
        in_chans: input channels (1 for grey images).
        **kwargs: the builder's options, overriding the variant's configuration — e.g. ``attn_kwargs``,
            ``zero_init_residual``, ``features_only``, ``device``, ``dtype``, ``shortcut`` (CIFAR
            ResNets), ``stem`` (ImageNet-layout ResNets), ``drop_rate`` (Wide ResNets).
    """
    entry = model_entry(name)
    options = {**entry.config, **kwargs}
    accepted = inspect.signature(entry.builder).parameters
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        known = sorted(k for k, p in accepted.items() if p.kind is inspect.Parameter.KEYWORD_ONLY)
        raise ValueError(
            f"{name} takes no option {', '.join(map(repr, unknown))}; its options: {', '.join(known)}"
        )
    return entry.builder(
        attention=attention,
        position=position,
        stages=stages,
        num_classes=entry.num_classes if num_classes is None else num_classes,
        in_chans=in_chans,
        **options,
    )
