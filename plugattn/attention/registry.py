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

__all__ = [
    "POSITIONS",
    "AttentionEntry",
    "attention_entry",
    "create_attention",
    "list_attention",
    "register_attention",
]

# Where a module sits in a residual branch by default (its paper's place):
#   "end"              after the branch's last BatchNorm, before the shortcut is added (SE, CBAM, HAM, ...)
#   "before_last_conv" after the activation that precedes the branch's last conv (SCSA: BasicBlock after
#                      conv1, Bottleneck after conv2, MobileNetV2 after the depthwise conv)
POSITIONS = ("end", "before_last_conv")

M = TypeVar("M", bound=type[nn.Module])


@dataclass(frozen=True)
class AttentionEntry:
    """What the registry knows of one module."""

    name: str
    cls: type[nn.Module]
    position: str
    paper: str


_REGISTRY: dict[str, AttentionEntry] = {}
_NONE_NAMES = ("none",)


def register_attention(name: str, *, paper: str, position: str = "end") -> Callable[[M], M]:
    """Class decorator adding a module under ``name``; a name registered twice raises ``ValueError``."""
    if not isinstance(name, str) or not name or name != name.lower() or name in _NONE_NAMES:
        raise ValueError(f"name must be a non-empty lower-case string other than 'none', got {name!r}")
    check_choice("position", position, POSITIONS)

    def decorator(cls: M) -> M:
        if name in _REGISTRY:
            raise ValueError(
                f"attention {name!r} is already registered (by {_REGISTRY[name].cls.__qualname__})"
            )
        _REGISTRY[name] = AttentionEntry(name=name, cls=cls, position=position, paper=paper)
        return cls

    return decorator


def list_attention() -> list[str]:
    """The registered names, sorted."""
    return sorted(_REGISTRY)


def attention_entry(name: str) -> AttentionEntry:
    """The registry entry of ``name``; unknown names raise ``ValueError`` listing the known ones."""
    key = name.lower() if isinstance(name, str) else name
    if key not in _REGISTRY:
        raise ValueError(f"attention must be one of {', '.join(list_attention())} (or 'none'); got {name!r}")
    return _REGISTRY[key]


AttentionSpec = str | type[nn.Module] | Callable[..., nn.Module] | None


def create_attention(attention: AttentionSpec, channels: int, **kwargs: Any) -> nn.Module:
    """Build an attention module for a feature map of ``channels`` channels.

    Args:
        attention: a registered name (``list_attention()``), a module class, a callable
            ``channels -> nn.Module``, or ``None``/``"none"`` for ``nn.Identity`` (so blocks never
            branch on whether they have attention).
        channels: channels of the feature map the module sees.
        **kwargs: keyword options of the module (e.g. ``separation_rate=0.6`` for HAM).
    """
    channels = check_int("channels", channels, minimum=1)
    if attention is None or (isinstance(attention, str) and attention.lower() in _NONE_NAMES):
        return nn.Identity()
    if isinstance(attention, str):
        entry = attention_entry(attention)
        accepted = [
            p.name
            for p in inspect.signature(entry.cls.__init__).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
            or (p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and p.name not in ("self", "channels"))
        ]
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            raise ValueError(
                f"attention {entry.name!r} ({entry.cls.__name__}) takes no argument "
                f"{', '.join(map(repr, unknown))}; its arguments: {', '.join(accepted) or 'none'}"
            )
        return entry.cls(channels, **kwargs)
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
