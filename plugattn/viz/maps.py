"""What each attention module attends to, as pictures can show it: spatial maps over the feature map
and channel weights, read from the modules' gates during one forward.

Every module's gates are read as the module computes them (``docs/attention.md``) and turned into
``(B, h, w)`` spatial maps with a caption and a ``(B, C)`` channel weight vector:

* HAM: its two maps, *important* and *sub-important* channels (``spatial.gate``), and ``a_c``.
* SCSA and CA: the directional weights ``a_h (B, C, H)`` and ``a_w (B, C, W)`` combined as the gate the
  module applies, ``a_h ⊗ a_w``, averaged over channels; SCSA's channel weights.
* GC: the softmax context weights over positions, reshaped to ``(H, W)``.
* Triplet: its H-W branch (the other two branches weigh channels against one spatial axis).
* Any other gate shaped like the feature map (CBAM, SimAM, EMA, SA): averaged
  over its channel or group axis; any gate with one value per channel: channel weights.
* RCCA's criss-cross weights have no single spatial map and are left out (said in the caption).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from plugattn.attention import attention_modules, capture_attention_maps
from plugattn.attention.registry import attention_name_of

__all__ = ["ModuleMaps", "module_maps", "one_per_stage"]


@dataclass
class ModuleMaps:
    """The maps of one attention module for a batch."""

    name: str  # qualified name in the model, e.g. "layer2.2.attn"
    kind: str  # registered name, e.g. "ham"
    spatial: dict[str, torch.Tensor] = field(default_factory=dict)  # caption -> (B, h, w)
    channel: torch.Tensor | None = None  # (B, C)
    important: torch.Tensor | None = None  # (B, C) bool: HAM's important group, chosen per sample
    note: str = ""


def module_maps(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[ModuleMaps]]:
    """Run ``model(x)`` once (no autograd); returns the logits and the maps of every plugattn module."""
    modules = attention_modules(model)
    sizes: dict[str, tuple[int, ...]] = {}

    def record(name: str):
        def hook(_m: nn.Module, args: tuple) -> None:  # returns None: the input is left as it is
            sizes.setdefault(name, tuple(args[0].shape))

        return hook

    handles = [m.register_forward_pre_hook(record(name)) for name, m in modules.items()]
    try:
        with capture_attention_maps(model) as gates, torch.no_grad():
            logits = model(x)
    finally:
        for h in handles:
            h.remove()
    found = []
    for name, module in modules.items():
        prefix = f"{name}." if name else ""
        own = {k[len(prefix) :]: v for k, v in gates.items() if k.startswith(prefix)}
        kind = attention_name_of(type(module)) or type(module).__name__
        maps = _interpret(ModuleMaps(name, kind), own, sizes[name])
        if kind == "ham":  # the channels HAM put in its important group: the top c_im of a_c
            top = maps.channel.topk(module.important_channels, dim=1).indices
            maps.important = torch.zeros_like(maps.channel, dtype=torch.bool).scatter_(1, top, True)
        found.append(maps)
    return logits, found


def one_per_stage(maps: list[ModuleMaps]) -> list[ModuleMaps]:
    """The last attention module of each stage (``layer2.2.attn`` → stage ``layer2``; ``stages.3.1.attn``
    → ``stages.3``), in network order: one row per resolution in a figure."""
    last: dict[str, ModuleMaps] = {}
    for m in maps:
        parts = m.name.split(".")
        stage = ".".join(parts[:-2]) if len(parts) > 2 else parts[0]
        last[stage] = m
    return list(last.values())


def _interpret(m: ModuleMaps, gates: dict[str, list[torch.Tensor]], size: tuple[int, ...]) -> ModuleMaps:
    b, c, h, w = size
    if m.kind == "ham":
        both = gates["spatial.gate"][0]  # (B, 2, H, W)
        m.spatial = {"important channels": both[:, 0], "sub-important channels": both[:, 1]}
        m.channel = gates["channel.gate"][0].reshape(b, c)
        return m
    if m.kind in ("scsa", "ca"):
        a_h, a_w = gates["spatial.gate" if m.kind == "scsa" else "gate"][:2]
        a_h, a_w = a_h.reshape(b, -1, h), a_w.reshape(b, -1, w)
        m.spatial = {"a_h ⊗ a_w (mean over channels)": (a_h[..., :, None] * a_w[..., None, :]).mean(1)}
        if "channel.gate" in gates:
            m.channel = gates["channel.gate"][0].reshape(b, c)
        return m
    if m.kind == "gc":
        m.spatial = {"context weights (softmax over positions)": gates["gate"][0].reshape(b, h, w)}
        return m
    if m.kind == "triplet":  # its C-W and H-C branches are maps over channels, not positions
        m.spatial = {"H-W branch": gates["hw.gate"][0].reshape(b, h, w)}
        return m
    if m.kind == "rcca":
        m.note = "criss-cross weights: no single spatial map"
        return m
    for gate, outs in gates.items():
        out = outs[-1]
        label = gate.removesuffix(".gate").removesuffix("gate") or "gate"
        if out.shape[-2:] == (h, w) and out.numel() % (b * h * w) == 0:
            maps = out.reshape(b, -1, h, w)
            extra = " (mean over channels)" if maps.shape[1] > 1 else ""
            m.spatial[f"{label} map{extra}"] = maps.mean(1)
        elif out.numel() == b * c and m.channel is None:
            m.channel = out.reshape(b, c)
    return m
