"""Small pieces more than one attention module uses."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable

import torch
from torch import nn

from plugattn._checks import check_float, check_int
from plugattn._dims import batch_norm_nd, conv_nd


def default_groups(channels: int, paper: int, *, per_group: int, argument: str) -> int:
    """The paper's group count where the width allows it, else the largest count below it that does.

    ``channels`` must split into groups of ``per_group · c`` channels (``c ≥ 1``): the result is the
    largest ``g ≤ paper`` with ``channels % (per_group · g) == 0`` — ``paper`` itself whenever it fits.
    Used only when the user gave no value; an explicit value is validated strictly by the module.
    """
    for g in range(min(paper, channels // per_group), 0, -1):
        if channels % (per_group * g) == 0:
            return g
    raise ValueError(
        f"channels={channels} cannot be split into {argument} of {per_group} equal parts "
        f"(channels must be a multiple of {per_group})"
    )


def eca_kernel_size(channels: int, slope: float = 2, offset: float = 1) -> int:
    """ECA's adaptive kernel size for a 1-D conv across ``channels`` (ECA-Net Eq. 12, HAM Eq. 6).

    ``t = int(|(log2(C) + offset) / slope|)``; ``k = t`` if ``t`` is odd else ``t + 1`` (ECA's integer
    rule: k = 3 for C in 16..64, 5 for 128..1024, 7 for 2048 with slope 2 and offset 1). The paper
    calls ``slope`` γ and ``offset`` b.
    """
    channels = check_int("channels", channels, minimum=1)
    check_float("kernel_slope", slope, low=0, low_open=True)
    check_float("kernel_offset", offset)
    t = int(abs((math.log2(channels) + offset) / slope))
    return t if t % 2 == 1 else t + 1


def eca_rule(
    owner: str, slope: float, offset: float, gamma: float | None, b: float | None
) -> tuple[float, float]:
    """ECA's rule parameters ``(kernel_slope, kernel_offset)`` of module ``owner``, taking their old
    names ``gamma`` and ``b`` for one more release with a ``FutureWarning`` (``b`` also named the batch
    size in HAM's file; the new names say what the numbers do)."""
    new = {"gamma": ("kernel_slope", slope, 2), "b": ("kernel_offset", offset, 1)}
    values = {"kernel_slope": slope, "kernel_offset": offset}
    for old, given in (("gamma", gamma), ("b", b)):
        if given is None:
            continue
        name, value, default = new[old]
        if value != default:
            raise ValueError(f"{owner}: give {name}={value!r} or its old name {old}={given!r}, not both")
        check_float(old, given, low=0 if old == "gamma" else None, low_open=old == "gamma")
        warnings.warn(
            f"{owner}({old}=...) is deprecated and will be removed; use {name}= (same meaning)",
            FutureWarning,
            stacklevel=3,
        )
        values[name] = given
    return values["kernel_slope"], values["kernel_offset"]


_LAYOUTS = {1: "(B, C, L) sequence", 2: "(B, C, H, W) feature map", 3: "(B, C, D, H, W) volume"}


def spatial_axes(x: torch.Tensor) -> tuple[int, ...]:
    """The spatial axes of a ``(B, C, *spatial)`` tensor: ``(2,)``, ``(2, 3)`` or ``(2, 3, 4)``."""
    return tuple(range(2, x.dim()))


def check_feature_map(module: nn.Module, x: torch.Tensor) -> None:
    """``x`` is the map ``module`` was built for: ``spatial_dims + 2`` axes, with ``module.channels``
    channels (``module.spatial_dims`` is 2 when the module has no such attribute).

    Called first in every module's ``forward``: a wrong width fails here with a message naming the module
    and both widths, not deep inside with an indexing error or, for modules without per-channel
    parameters (ECA, SimAM, triplet), not at all. Integer comparisons: free in eager mode and a static
    guard under ``torch.compile``.
    """
    dims = getattr(module, "spatial_dims", 2)
    if x.dim() != dims + 2:
        hint = ""
        if x.dim() - 2 in _LAYOUTS:
            hint = f"; for a {_LAYOUTS[x.dim() - 2]} build it with spatial_dims={x.dim() - 2}"
        raise ValueError(
            f"{type(module).__name__} expects a {_LAYOUTS[dims]}; got a {x.dim()}-D tensor of "
            f"shape {tuple(x.shape)}{hint}"
        )
    if x.shape[1] != module.channels:
        raise ValueError(
            f"{type(module).__name__} was built for channels={module.channels}; got an input with "
            f"{x.shape[1]} channels (shape {tuple(x.shape)}): build it with channels={x.shape[1]}"
        )


class GateHolder(nn.Module):
    """A parameter-free holder for a ``gate`` submodule.

    Lets a module whose state-dict layout is fixed by a reference (SCSA) still expose its gates under
    the house names ``spatial.gate`` and ``channel.gate``: a holder adds no state-dict keys.
    """

    def __init__(self, gate: nn.Module) -> None:
        super().__init__()
        self.gate = gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(x)


def reduced_channels(
    channels: int, rd_ratio: float, rd_channels: int | None = None, *, min_channels: int = 1
) -> int:
    """The one rounding rule for reduced (bottleneck) widths in plugattn.

    ``rd_channels`` if given, else ``max(min_channels, floor(channels * rd_ratio))`` — the papers'
    ``C // r``: SE at 16 channels with ratio 1/16 has 1 hidden unit, as in the SE and HAM papers. (timm
    rounds up to a multiple of 8, which silently turns a 16× reduction into 2× at CIFAR widths.)
    """
    channels = check_int("channels", channels, minimum=1)
    # rd_ratio is validated even when rd_channels overrides it, so a module needs no check of its own.
    check_float("rd_ratio", rd_ratio, low=0, high=1, low_open=True)
    if rd_channels is not None:
        return check_int("rd_channels", rd_channels, minimum=1)
    # The epsilon keeps ratios such as 1/3 from flooring 48 * (1/3) = 15.999... down to 15.
    return max(min_channels, int(channels * rd_ratio + 1e-9))


LayerFactory = type[nn.Module] | Callable[[], nn.Module]


def make_layer(name: str, layer: LayerFactory) -> nn.Module:
    """Build a parameter-free layer (activation or gate) from a module class or a zero-argument factory.

    Raises ``ValueError`` naming ``name`` when ``layer`` is a module instance (one instance would be
    shared, and ``gate`` hooks would fire for every user), not callable, or does not return a module.
    """
    if isinstance(layer, nn.Module):
        raise ValueError(
            f"{name} must be an nn.Module class or a factory returning a module, not an instance "
            f"({type(layer).__name__}); pass {type(layer).__name__} itself"
        )
    if isinstance(layer, type) and not issubclass(layer, nn.Module):
        raise ValueError(f"{name} must be an nn.Module class or a factory returning a module, got {layer!r}")
    if not callable(layer):
        raise ValueError(f"{name} must be an nn.Module class or a factory returning a module, got {layer!r}")
    module = layer()
    if not isinstance(module, nn.Module):
        raise ValueError(f"{name}={layer!r} returned {type(module).__name__}, not an nn.Module")
    return module


class ConvNormGate(nn.Module):
    """``gate(BN(Conv(2, 1, k, no bias)(d)))`` on a two-map descriptor ``d`` of shape ``(B, 2, *S)``.

    The authors' BasicConv as CBAM's spatial gate and triplet attention's branches use it: BatchNorm
    with eps 1e-5 and momentum 0.01 (torch's default momentum is 0.1). Returns ``(B, 1, *S)``; the conv
    and norm have ``spatial_dims`` axes (2 by default: ``(B, 2, P, Q)``).
    """

    def __init__(
        self,
        kernel_size: int = 7,
        *,
        gate_layer: LayerFactory = nn.Sigmoid,
        spatial_dims: int = 2,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        conv, norm = conv_nd(spatial_dims), batch_norm_nd(spatial_dims)
        self.conv = conv(2, 1, kernel_size, padding=kernel_size // 2, bias=False, **factory)
        self.bn = norm(1, eps=1e-5, momentum=0.01, **factory)
        self.gate = make_layer("gate_layer", gate_layer)

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        return self.gate(self.bn(self.conv(d)))


def hooked(modules: Iterable[nn.Module]) -> bool:
    """Whether any of ``modules`` has a forward (pre-)hook, or a global one is set: a fused native step
    that stands in for these layers would keep the hook from seeing its call."""
    return any(m._forward_hooks or m._forward_pre_hooks for m in modules) or bool(
        nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks
    )
