"""Catch attention maps from any module through its named gates.

Every plugattn module ends each attention path in a submodule whose attribute name is ``gate`` (in
composite modules ``channel.gate`` and ``spatial.gate``). A forward hook on those submodules sees every
map the model computes, without re-running anything and without per-module special cases.

:func:`attention_maps` is the one-call form: one forward, every map of the plugattn modules inside any
model (ours, retrofitted, timm-built), by name, with glob patterns to choose.
"""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from plugattn.attention.registry import attention_name_of

__all__ = ["attention_maps", "attention_modules", "capture_attention_maps", "gate_modules"]


def gate_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The gate submodules of ``model`` by qualified name (those whose own name is ``gate``)."""
    return {name: m for name, m in model.named_modules() if name.rsplit(".", 1)[-1] == "gate"}


@contextmanager
def capture_attention_maps(model: nn.Module) -> Iterator[dict[str, list[torch.Tensor]]]:
    """Record every gate output of ``model`` while the context is open.

    Yields a dict from the gate's qualified name to the list of its outputs (detached), one per call,
    in call order (SCSA's ``spatial.gate`` fires twice per forward: the H map, then the W map).

    Example::

        with capture_attention_maps(model) as maps:
            model(x)
        a_c = maps["layer1.0.attn.channel.gate"][0]
    """
    maps: dict[str, list[torch.Tensor]] = defaultdict(list)
    handles = []
    for name, module in gate_modules(model).items():

        def hook(_m: nn.Module, _inp: tuple, out: torch.Tensor, name: str = name) -> None:
            maps[name].append(out.detach())

        handles.append(module.register_forward_hook(hook))
    try:
        yield maps
    finally:
        for h in handles:
            h.remove()


def attention_modules(model: nn.Module) -> dict[str, nn.Module]:
    """The plugattn attention modules inside ``model`` by qualified name (``""`` for ``model`` itself),
    outermost only: a module of a registered class, not those nested in one."""
    found: dict[str, nn.Module] = {}
    for name, m in model.named_modules():
        if attention_name_of(type(m)) is None:
            continue
        if not any(name.startswith(f"{outer}.") or outer == "" for outer in found):
            found[name] = m
    return found


def attention_maps(
    model: nn.Module, x: torch.Tensor, *, names: str | Sequence[str] | None = None
) -> dict[str, torch.Tensor]:
    """Run ``model(x)`` once and return every gate output of its plugattn modules, by name.

    Keys are the gates' qualified names (``"layer1.0.attn.spatial.gate"``); a gate that fires more than
    once per forward gets one key per call, ``"<name>[0]"``, ``"<name>[1]"``, ... (SCSA's spatial gate:
    the H map, then the W map; CA's gate likewise). Values are detached, in the shapes the modules
    compute them (``docs/attention.md`` lists them).

    Args:
        names: glob pattern(s) over those keys (``"layer3.*"``, ``"*spatial*"``); ``None``: all. A
            pattern that matches nothing is an error naming the keys there are.

    The model runs in the mode it is in (call ``model.eval()`` first for inference maps) and without
    autograd; every hook is removed afterwards, also when the forward raises.
    """
    modules = attention_modules(model)
    if not modules:
        raise ValueError(
            f"{type(model).__name__} holds no plugattn attention module; build it with attention= or "
            "plugattn.insert_attention"
        )
    gates = {
        f"{outer}.{inner}" if outer else inner: gate
        for outer, module in modules.items()
        for inner, gate in gate_modules(module).items()
    }
    recorded: dict[str, list[torch.Tensor]] = defaultdict(list)
    handles = [
        gate.register_forward_hook(lambda _m, _i, out, n=name: recorded[n].append(out.detach()))
        for name, gate in gates.items()
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    maps = {
        (name if len(outs) == 1 else f"{name}[{i}]"): out
        for name, outs in recorded.items()
        for i, out in enumerate(outs)
    }
    return _select(maps, names)


def _select(maps: dict[str, torch.Tensor], names: str | Sequence[str] | None) -> dict[str, torch.Tensor]:
    if names is None:
        return maps
    patterns = [names] if isinstance(names, str) else list(names)
    chosen: dict[str, torch.Tensor] = {}
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise ValueError(f"names must be glob patterns (strings), got {pattern!r}")
        hits = [k for k in maps if fnmatch.fnmatchcase(k, pattern)]
        if not hits:
            shown = ", ".join(list(maps)[:8]) + (", ..." if len(maps) > 8 else "")
            raise ValueError(f"names pattern {pattern!r} matches no attention map; the maps are: {shown}")
        chosen.update((k, maps[k]) for k in hits)
    return chosen
