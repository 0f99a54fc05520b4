"""The attention registry: one strict table from short names to module classes.

Every module registers itself with :func:`register_attention` where it is defined, so the registry,
``create_attention`` and the test matrix all see a new module as soon as its file is imported.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import nn

from plugattn._checks import check_choice, check_int
from plugattn._dims import check_spatial_dims
from plugattn._registry import NO_ATTENTION, Registry, is_no_attention

__all__ = [
    "PAPER_POSITIONS",
    "AttentionEntry",
    "attention_entry",
    "attention_name_of",
    "create_attention",
    "list_attention",
    "register_attention",
]

# The places a module's paper may put it in a residual branch, its default there (the models room has
# the full list of positions a block offers, plugattn.models.POSITIONS):
#   "end"              after the branch's last BatchNorm, before the shortcut is added (SE, CBAM, HAM, ...)
#   "before_last_conv" after the activation that precedes the branch's last conv (SCSA: BasicBlock after
#                      conv1, Bottleneck after conv2, MobileNetV2 after the depthwise conv)
PAPER_POSITIONS = ("end", "before_last_conv")

M = TypeVar("M", bound=type[nn.Module])


@dataclass(frozen=True)
class AttentionEntry:
    """What the registry knows of one module."""

    name: str
    cls: type[nn.Module]
    position: str
    paper: str


_REGISTRY: Registry[AttentionEntry] = Registry("attention", reserved=(NO_ATTENTION,), also="or 'none'")


def register_attention(name: str, *, paper: str, position: str = "end") -> Callable[[M], M]:
    """Class decorator adding a module under ``name``; a name registered twice raises ``ValueError``."""
    _REGISTRY.check_name(name)
    check_choice("position", position, PAPER_POSITIONS)

    def decorator(cls: M) -> M:
        taken = _REGISTRY.get(name)
        _REGISTRY.register(
            name,
            AttentionEntry(name=name, cls=cls, position=position, paper=paper),
            owner=f"by {taken.cls.__qualname__}" if taken is not None else "",
        )
        return cls

    return decorator


def list_attention() -> list[str]:
    """The registered names, sorted."""
    return _REGISTRY.names()


def attention_entry(name: str) -> AttentionEntry:
    """The registry entry of ``name``; unknown names raise ``ValueError`` listing the known ones."""
    return _REGISTRY.lookup(name)


def attention_name_of(cls: type[nn.Module]) -> str | None:
    """The registered name of module class ``cls``, or None."""
    found = _REGISTRY.find(lambda entry: entry.cls is cls)
    return found[0] if found is not None else None


AttentionSpec = str | type[nn.Module] | Callable[..., nn.Module] | None


def create_attention(
    attention: AttentionSpec, channels: int, *, spatial_dims: int = 2, **kwargs: Any
) -> nn.Module:
    """Build an attention module for a map of ``channels`` channels.

    Args:
        attention: a registered name (``list_attention()``), a module class, a callable
            ``channels -> nn.Module``, or ``None``/``"none"`` for ``nn.Identity`` (so blocks never
            branch on whether they have attention).
        channels: channels of the map the module sees.
        spatial_dims: 1 for signals ``(B, C, L)``, 2 (default) for images ``(B, C, H, W)``, 3 for
            volumes ``(B, C, D, H, W)``. Every module plugattn ships takes it; a module is passed
            ``spatial_dims`` only when it is not 2, so a class or factory written for images keeps working.
        **kwargs: keyword options of the module (e.g. ``separation_rate=0.6`` for HAM).
    """
    channels = check_int("channels", channels, minimum=1)
    check_spatial_dims(spatial_dims)
    if is_no_attention(attention):
        return nn.Identity()
    if isinstance(attention, str):
        entry = attention_entry(attention)
        accepted = [
            p.name
            for p in inspect.signature(entry.cls.__init__).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
            or (p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and p.name not in ("self", "channels"))
            if p.name != "spatial_dims"
        ]
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            raise ValueError(
                f"attention {entry.name!r} ({entry.cls.__name__}) takes no argument "
                f"{', '.join(map(repr, unknown))}; its arguments: {', '.join(accepted) or 'none'}"
            )
        if spatial_dims != 2 and "spatial_dims" not in inspect.signature(entry.cls.__init__).parameters:
            raise ValueError(
                f"attention {entry.name!r} ({entry.cls.__name__}) takes no spatial_dims: it has only a 2-D "
                f"form, so spatial_dims={spatial_dims} is not available"
            )
        return entry.cls(channels, **kwargs, **({"spatial_dims": spatial_dims} if spatial_dims != 2 else {}))
    if spatial_dims != 2:
        kwargs["spatial_dims"] = spatial_dims
    if isinstance(attention, nn.Module):
        raise ValueError(
            f"attention must be a name, a class or a factory, not a module instance "
            f"({type(attention).__name__}): one instance would be shared by every block"
        )
    if callable(attention):
        module = attention(channels, **kwargs)
        if not isinstance(module, nn.Module):
            raise ValueError(
                f"attention factory {attention!r} returned {type(module).__name__}, not an nn.Module"
            )
        return module
    raise ValueError(
        f"attention must be a registered name, an nn.Module class, a callable or None; got {attention!r}"
    )
