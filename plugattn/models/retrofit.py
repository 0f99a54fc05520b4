"""Put attention into a model built elsewhere, at the same positions as in plugattn's own blocks.

:func:`insert_attention` finds the residual blocks of a model by their structure and changes only the
submodule at the requested position; the model's own code runs unchanged. It knows:

* plugattn's blocks — the attention goes into their ``attn`` hook, so the result equals the model
  built with ``create_model(..., attention=...)`` (same structure, same state-dict keys);
* torchvision/timm ResNet blocks — BasicBlock ``conv1, bn1, conv2, bn2`` and Bottleneck
  ``conv1 … bn3``, with a ``downsample`` attribute (the activation names, torchvision's shared
  ``relu`` or timm's ``act1/act2/act3``, do not matter);
* timm's EfficientNet-family blocks — ``InvertedResidual`` (``conv_pw, bn1, conv_dw, bn2, conv_pwl,
  bn3``) and ``DepthwiseSeparableConv`` (``conv_dw, bn1, conv_pw, bn2``), with ``has_skip`` or
  ``has_residual``; timm's BatchNormAct2d carries the activation, so "after bn" is after the act;
* torchvision's MobileNetV2 ``InvertedResidual`` — a ``conv`` Sequential of Conv-BN-act Sequentials
  followed by the projection conv and BN, with ``use_res_connect``.

How the attention is attached, and the state-dict keys that result (``<block>`` is the block's name,
e.g. ``layer1.0``):

===============================================  =================================================
where                                            how / keys
===============================================  =================================================
timm block whose own empty hook is at the place  the hook is filled: ``<block>.se.*`` — timm's own
(ResNet ``se`` at "end"; EfficientNet ``se``     keys for ``attn_layer``/``se_layer``
after the depthwise conv)
a module's output ("end": the last BN)           the BN is wrapped in :class:`AttentionAfter`:
                                                 ``<block>.bn2.module.*`` and ``<block>.bn2.attn.*``
after a conv group that is not the last          the next conv is wrapped in :class:`AttentionBefore`
                                                 (attention on its input = after the previous
                                                 activation): ``<block>.conv2.module.*`` and
                                                 ``<block>.conv2.attn.*``
torchvision MobileNetV2 ``.conv`` Sequential     the attention is appended to the Sequential (the
                                                 block's ``conv`` for "end", the Conv-BN-ReLU6 group
                                                 otherwise): ``<block>.conv.4.*``, ``<block>.conv.1.3.*``
                                                 — existing keys unchanged
===============================================  =================================================

The wrappers load the wrapped module's bare keys too (``<block>.bn2.weight`` is read as
``<block>.bn2.module.weight``), so a checkpoint saved before the retrofit loads with
``strict=False`` (only the attention's keys missing); attribute reads fall through to the wrapped
module (``block.conv3.in_channels`` still works).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from plugattn._checks import check_choice
from plugattn._registry import is_no_attention
from plugattn.attention.registry import AttentionSpec
from plugattn.models.blocks import ResidualBlock, build_attention
from plugattn.models.placement import POSITIONS, check_stages, default_position, group_index, is_empty

__all__ = ["AttentionAfter", "AttentionBefore", "find_blocks", "insert_attention"]


class _AttentionWrapper(nn.Module):
    """Shared by the two wrappers: the wrapped ``module``, the ``attn``, loadable bare keys."""

    def __init__(self, module: nn.Module, attn: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.attn = attn

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            modules = self.__dict__.get("_modules")
            if modules is None or "module" not in modules:
                raise
            return getattr(modules["module"], name)

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        # A checkpoint of the model before the retrofit names the wrapped module's tensors without
        # "module.": read them as the wrapped module's.
        own = (prefix + "module.", prefix + "attn.")
        for key in [k for k in state_dict if k.startswith(prefix) and not k.startswith(own)]:
            state_dict[prefix + "module." + key[len(prefix) :]] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class AttentionAfter(_AttentionWrapper):
    """``attn(module(x))``: attention on a module's output (e.g. after a block's last BN)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(self.module(x))


class AttentionBefore(_AttentionWrapper):
    """``module(attn(x))``: attention on a module's input (e.g. before a block's next conv)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(self.attn(x))


# --- block kinds ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _NamedBlock:
    """A foreign block whose conv groups are attributes: ``convs[i]`` and its norm ``norms[i]``.

    ``hook``: (group index, attribute) of the block's own attention hook, filled when empty.
    """

    description: str
    convs: tuple[str, ...]
    norms: tuple[str, ...]
    markers: tuple[str, ...]  # at least one of these attributes must exist
    hook: tuple[int, str] | None = None  # index -1 means the last group

    def matches(self, m: nn.Module) -> bool:
        names = (*self.convs, *self.norms)
        return all(isinstance(getattr(m, n, None), nn.Module) for n in names) and any(
            hasattr(m, k) for k in self.markers
        )


# More specific structures first (a Bottleneck also has a BasicBlock's attributes).
_NAMED_BLOCKS = (
    _NamedBlock(
        "timm InvertedResidual",
        ("conv_pw", "conv_dw", "conv_pwl"),
        ("bn1", "bn2", "bn3"),
        ("has_skip", "has_residual"),
        hook=(1, "se"),
    ),
    _NamedBlock(
        "timm DepthwiseSeparableConv",
        ("conv_dw", "conv_pw"),
        ("bn1", "bn2"),
        ("has_skip", "has_residual"),
        hook=(0, "se"),
    ),
    _NamedBlock(
        "ResNet Bottleneck",
        ("conv1", "conv2", "conv3"),
        ("bn1", "bn2", "bn3"),
        ("downsample",),
        hook=(-1, "se"),
    ),
    _NamedBlock("ResNet BasicBlock", ("conv1", "conv2"), ("bn1", "bn2"), ("downsample",), hook=(-1, "se")),
)

_SEARCHED = (
    "plugattn blocks; torchvision/timm ResNet BasicBlock (conv1, bn1, conv2, bn2, downsample) and "
    "Bottleneck (conv1..conv3, bn1..bn3, downsample); timm InvertedResidual (conv_pw, bn1, conv_dw, bn2, "
    "conv_pwl, bn3, has_skip) and DepthwiseSeparableConv (conv_dw, bn1, conv_pw, bn2, has_skip); "
    "torchvision InvertedResidual (a `conv` nn.Sequential and use_res_connect)"
)


def _is_torchvision_inverted_residual(m: nn.Module) -> bool:
    return isinstance(getattr(m, "conv", None), nn.Sequential) and hasattr(m, "use_res_connect")


def _channels_out(m: nn.Module) -> int:
    for attr in ("num_features", "out_channels", "num_channels"):
        if isinstance(getattr(m, attr, None), int):
            return getattr(m, attr)
    raise ValueError(f"cannot tell the output channels of {type(m).__name__} (no num_features/out_channels)")


def _channels_in(m: nn.Module) -> int:
    if isinstance(getattr(m, "in_channels", None), int):
        return m.in_channels
    raise ValueError(f"cannot tell the input channels of {type(m).__name__} (no in_channels)")


def _first_conv(seq: nn.Sequential) -> nn.Module:
    for m in seq.modules():
        if isinstance(m, nn.Conv2d):
            return m
    raise ValueError(f"no Conv2d in {type(seq).__name__}")


def _factory(m: nn.Module) -> dict[str, Any]:
    """device and dtype of ``m``'s first floating tensor, so the attention matches the model."""
    for t in (*m.parameters(), *m.buffers()):
        if t.is_floating_point():
            return {"device": t.device, "dtype": t.dtype}
    return {}


@dataclass
class _Plan:
    """One block's change: attach the attention of ``channels`` channels with ``apply``."""

    name: str
    block: nn.Module
    channels: int
    factory: dict[str, Any]
    apply: Callable[[nn.Module], None]


def _plan_own(name: str, block: ResidualBlock, position: str) -> _Plan:
    if block.has_attention:
        raise ValueError(f"block {name!r} already has attention ({type(block.attn).__name__})")
    return _Plan(
        name,
        block,
        block.attention_channels(position),
        {**_factory(block), "spatial_dims": block.spatial_dims},  # a 1-D or 3-D block's map
        lambda a: block.install_attention(a, position),
    )


def _plan_named(name: str, block: nn.Module, kind: _NamedBlock, position: str) -> _Plan:
    n = len(kind.convs)
    i = group_index(position, n, f"{kind.description} {name!r}")
    if kind.hook is not None:
        hook_index, hook_attr = kind.hook
        if hook_index % n == i and hasattr(block, hook_attr) and is_empty(getattr(block, hook_attr)):
            target = getattr(block, kind.norms[i]) if i == n - 1 else getattr(block, kind.convs[i + 1])
            channels = _channels_out(target) if i == n - 1 else _channels_in(target)
            return _Plan(name, block, channels, _factory(block), lambda a: setattr(block, hook_attr, a))
    if i == n - 1:
        attr, wrapper = kind.norms[i], AttentionAfter
        channels = _channels_out(getattr(block, attr))
    else:
        attr, wrapper = kind.convs[i + 1], AttentionBefore
        channels = _channels_in(getattr(block, attr))
    target = getattr(block, attr)
    if isinstance(target, _AttentionWrapper):
        raise ValueError(f"block {name!r} already has attention at {attr!r}")
    return _Plan(name, block, channels, _factory(block), lambda a: setattr(block, attr, wrapper(target, a)))


def _plan_torchvision_mobilenet(name: str, block: nn.Module, position: str) -> _Plan:
    conv: nn.Sequential = block.conv
    groups = [m for m in conv if isinstance(m, nn.Sequential)]  # the Conv-BN-act groups, in order
    n = len(groups) + 1  # + the projection conv and its BN
    i = group_index(position, n, f"torchvision InvertedResidual {name!r}")
    if i == n - 1:
        norms = [m for m in conv if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            raise ValueError(f"torchvision InvertedResidual {name!r} has no projection BatchNorm in .conv")
        return _Plan(name, block, _channels_out(norms[-1]), _factory(block), conv.append)
    return _Plan(name, block, _first_conv(groups[i]).out_channels, _factory(block), groups[i].append)


def _block_stride(block: nn.Module) -> int:
    stride = getattr(block, "stride", None)
    if isinstance(stride, int):
        return stride
    if isinstance(stride, tuple) and stride and isinstance(stride[0], int):
        return max(stride)
    return max((max(m.stride) for m in block.modules() if isinstance(m, nn.Conv2d)), default=1)


def find_blocks(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """The residual blocks ``insert_attention`` knows, in order: ``(qualified name, block, kind)``."""
    found: list[tuple[str, nn.Module, str]] = []
    inside: tuple[str, ...] = ()
    for name, m in model.named_modules():
        if inside and any(name.startswith(p + ".") for p in inside):
            continue  # a block's own submodules are not blocks
        if isinstance(m, ResidualBlock):
            kind = "plugattn"
        elif _is_torchvision_inverted_residual(m):
            kind = "torchvision InvertedResidual"
        else:
            kind = next((k.description for k in _NAMED_BLOCKS if k.matches(m)), "")
            if not kind:
                continue
        found.append((name, m, kind))
        inside = (*inside, name)
    return found


def insert_attention(
    model: nn.Module,
    attention: AttentionSpec,
    *,
    position: str | None = None,
    stages: Sequence[int] | None = None,
    attn_kwargs: dict[str, Any] | None = None,
) -> nn.Module:
    """Insert ``attention`` into every residual block of ``model`` (in place) and return ``model``.

    Args:
        model: a plugattn model, or a torchvision/timm ResNet or MobileNet-family model (see the module
            docstring for the structures recognised, and the state-dict keys that result).
        attention: a registered name, a module class or a callable ``channels -> nn.Module``
            (``None``/``"none"``: the model is returned unchanged).
        position: one of :data:`plugattn.models.placement.POSITIONS`; ``None`` = the module's paper
            position (SCSA ``"before_last_conv"``, the others ``"end"``).
        stages: 0-based indices of the stages to change; ``None`` = all. Stages are counted by
            resolution: a block with stride > 1 (other than the first block) opens a new stage, so
            ``layer1``…``layer4`` of a ResNet are stages 0…3.
        attn_kwargs: keyword options of the attention module.

    The attention takes the device and dtype of the block it goes into. Every block is checked and
    every attention module built before the model is changed, so an error leaves the model as it was.
    """
    if is_no_attention(attention):
        return model
    position = (
        default_position(attention) if position is None else check_choice("position", position, POSITIONS)
    )
    blocks = find_blocks(model)
    if not blocks:
        raise ValueError(
            f"insert_attention found no residual block in {type(model).__name__}; it looks for {_SEARCHED}"
        )
    stage_of, stage = [], 0
    for k, (_, block, _) in enumerate(blocks):
        if k > 0 and _block_stride(block) > 1:
            stage += 1
        stage_of.append(stage)
    chosen = check_stages(stages, stage + 1)

    plans = []
    for (name, block, kind), s in zip(blocks, stage_of, strict=True):
        if s not in chosen:
            continue
        if kind == "plugattn":
            plans.append(_plan_own(name, block, position))
        elif kind == "torchvision InvertedResidual":
            plans.append(_plan_torchvision_mobilenet(name, block, position))
        else:
            spec = next(k for k in _NAMED_BLOCKS if k.description == kind)
            plans.append(_plan_named(name, block, spec, position))
    modules = [build_attention(attention, p.channels, attn_kwargs, **p.factory) for p in plans]
    for plan, module in zip(plans, modules, strict=True):
        plan.apply(module)
    return model
