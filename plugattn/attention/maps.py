"""Catch attention maps from any module through its named gates.

Every plugattn module ends each attention path in a submodule whose attribute name is ``gate`` (in
composite modules ``channel.gate`` and ``spatial.gate``). A forward hook on those submodules sees every
map the model computes, without re-running anything and without per-module special cases.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = ["capture_attention_maps", "gate_modules"]


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
