"""The residual blocks every backbone is built from, each with exactly one attention hook.

* :class:`BasicBlock` and :class:`Bottleneck` — He et al. 2016, "Deep Residual Learning for Image
  Recognition", https://arxiv.org/abs/1512.03385 (the Bottleneck's stride on its 3×3 conv, as
  torchvision's "v1.5"; ``groups``/``base_width`` give ResNeXt, Xie et al. 2017,
  https://arxiv.org/abs/1611.05431).
* :class:`PreActBasicBlock` — the pre-activation block of He et al. 2016b, "Identity Mappings in Deep
  Residual Networks", https://arxiv.org/abs/1603.05027, as Wide ResNets use it (Zagoruyko & Komodakis
  2016, https://arxiv.org/abs/1605.07146).
* :class:`ShortcutA` — He et al. 2016's parameter-free "option A" shortcut for the CIFAR ResNets
  (defined in :mod:`plugattn.models.layers` with the other shortcuts, re-exported here).

Every block takes ``spatial_dims`` (1 signals ``(B, C, L)``, 2 images — the default, 3 volumes
``(B, C, D, H, W)``), which picks its conv, norm and attention types; a 2-D block has the same layers,
keys and parameters as before the option existed.

A block's ``forward`` is its data flow written out: conv groups (conv → norm → activation), each
passed through ``self.attend(y, after=i)``, which applies the attention module ``self.attn`` after the
group its position names (:mod:`plugattn.models.placement`) and returns ``y`` unchanged after the
others; then the shortcut and the add. MobileNetV2's :class:`InvertedResidual` lives with its network.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from plugattn._checks import check_float, check_int
from plugattn._dims import batch_norm_nd, check_spatial_dims
from plugattn.attention.registry import (
    AttentionSpec,
    attention_name_of,
    create_attention,
)
from plugattn.models.layers import SHORTCUTS, ShortcutA, conv_no_bias, make_shortcut
from plugattn.models.placement import default_position, group_index, is_empty

__all__ = [
    "SHORTCUTS",
    "BasicBlock",
    "Bottleneck",
    "PreActBasicBlock",
    "ResidualBlock",
    "ShortcutA",
    "build_attention",
    "conv_no_bias",
    "init_weights",
]


def build_attention(
    attention: AttentionSpec,
    channels: int,
    attn_kwargs: dict[str, Any] | None = None,
    *,
    spatial_dims: int = 2,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> nn.Module:
    """``create_attention`` with factory keywords: passed on to registered modules (which all take
    ``device``/``dtype``), applied with ``.to`` to anything else (a user factory need not take them).
    ``spatial_dims`` (1 signals, 2 images, 3 volumes) goes to ``create_attention``, which passes it to a
    user's class or factory only when it is not 2."""
    kwargs = dict(attn_kwargs or {})
    if "spatial_dims" in kwargs:
        raise ValueError(
            f"attn_kwargs may not set spatial_dims (got {kwargs['spatial_dims']!r}): the model gives its "
            f"attention its own ({spatial_dims})"
        )
    kwargs["spatial_dims"] = check_spatial_dims(spatial_dims)
    factory = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
    registered = isinstance(attention, str) or attention_name_of(attention) is not None
    if registered or not factory:
        return create_attention(attention, channels, **kwargs, **factory)
    return create_attention(attention, channels, **kwargs).to(**factory)


class ResidualBlock(nn.Module):
    """Base of plugattn's blocks: a residual branch of conv groups and one attention hook ``attn``.

    Subclasses build their layers, set ``self._group_channels`` (each conv group's output channels, in
    order), call :meth:`set_attention`, and write ``forward`` as the data flow it is — conv → norm → act
    of each group, each group's output passed through ``self.attend(y, after=i)`` (the attention runs
    after the one group its position names), then the add — and ``zero_init_last`` for their last norm.
    """

    _group_channels: tuple[int, ...]  # output channels of each conv group, in order
    spatial_dims: int = 2  # axes after the channels: 1 signals, 2 images, 3 volumes
    _attn_after: int  # the index of the conv group the attention follows
    attn: nn.Module
    attn_position: str

    def attention_channels(self, position: str) -> int:
        """Channels of the feature map the attention sees at ``position``."""
        return self._group_channels[group_index(position, len(self._group_channels), type(self).__name__)]

    def set_attention(
        self,
        attention: AttentionSpec,
        position: str | None = None,
        attn_kwargs: dict[str, Any] | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        """Build ``attention`` for this block at ``position`` (``None``: the module's paper position)."""
        position = default_position(attention) if position is None else position
        channels = self.attention_channels(position)
        try:
            module = build_attention(
                attention, channels, attn_kwargs, spatial_dims=self.spatial_dims, device=device, dtype=dtype
            )
        except ValueError as err:
            raise ValueError(f"attention on this block's {channels}-channel map: {err}") from err
        self.install_attention(module, position)

    def install_attention(self, module: nn.Module, position: str) -> None:
        """Put an already-built attention ``module`` at ``position`` (after which conv group it runs)."""
        self._attn_after = group_index(position, len(self._group_channels), type(self).__name__)
        self.attn = module
        self.attn_position = position

    @property
    def has_attention(self) -> bool:
        return not is_empty(self.attn)

    def attend(self, x: torch.Tensor, *, after: int) -> torch.Tensor:
        """``attn(x)`` if the attention sits after conv group ``after``, else ``x`` (a fixed choice)."""
        return self.attn(x) if after == self._attn_after else x

    def zero_init_last(self) -> None:
        """Zero the weight of the branch's last norm (Goyal et al. 2017): the block starts near identity."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"attn_position={self.attn_position!r}"


class BasicBlock(ResidualBlock):
    """Two 3×3 convs: conv1 → bn1 → ReLU → conv2 → bn2, plus the shortcut, then ReLU.

    Args:
        in_chs: input channels.
        planes: output channels (``expansion`` = 1).
        stride: stride of conv1 (and of the shortcut).
        shortcut: ``"B"`` (1×1 conv + BN, default) or ``"A"`` (parameter-free) when shapes change.
        groups, base_width: must stay 1 and 64 (ResNeXt widths need the Bottleneck).
        attention, position, attn_kwargs: the attention module, its position (``None``: its paper's;
            SCSA's ``"before_last_conv"`` is after conv1/bn1/ReLU here) and its keyword options.
        spatial_dims: 1 (signals ``(B, C, L)``), 2 (images, default) or 3 (volumes ``(B, C, D, H, W)``):
            the conv, norm and attention types; a 2-D block is unchanged by it.
        device, dtype: factory keywords.

    State-dict keys are torchvision's (``conv1``, ``bn1``, ``conv2``, ``bn2``, ``downsample.0/1``),
    plus ``attn.*``.
    """

    expansion = 1

    def __init__(
        self,
        in_chs: int,
        planes: int,
        stride: int = 1,
        *,
        shortcut: str = "B",
        groups: int = 1,
        base_width: int = 64,
        attention: AttentionSpec = None,
        position: str | None = None,
        attn_kwargs: dict[str, Any] | None = None,
        spatial_dims: int = 2,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError(
                f"BasicBlock takes groups=1 and base_width=64 only, got groups={groups}, "
                f"base_width={base_width} (use a Bottleneck model for ResNeXt widths)"
            )
        f = {"device": device, "dtype": dtype}
        d, norm = {"spatial_dims": spatial_dims}, batch_norm_nd(spatial_dims)
        self.stride = stride
        self.spatial_dims = spatial_dims
        self.conv1 = conv_no_bias(in_chs, planes, 3, stride, **d, **f)
        self.bn1 = norm(planes, **f)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = conv_no_bias(planes, planes, 3, **d, **f)
        self.bn2 = norm(planes, **f)
        self.downsample = make_shortcut(shortcut, in_chs, planes, stride, **d, **f)
        self.act2 = nn.ReLU(inplace=True)
        self._group_channels = (planes, planes)
        self.set_attention(attention, position, attn_kwargs, **f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.attend(self.act1(self.bn1(self.conv1(x))), after=0)
        y = self.attend(self.bn2(self.conv2(y)), after=1)
        return self.act2(y + self.downsample(x))

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn2.weight)


class Bottleneck(ResidualBlock):
    """1×1 → 3×3 (grouped, strided) → 1×1 convs with BN, ReLU between, plus the shortcut, then ReLU.

    ``width = int(planes · base_width / 64) · groups`` channels inside, ``4 · planes`` out (ResNeXt's
    ``32×4d`` is ``groups=32, base_width=4``).

    Args:
        in_chs: input channels.
        planes: output channels / 4.
        stride: stride of the 3×3 conv (and of the shortcut).
        shortcut: ``"B"`` (1×1 conv + BN, default) or ``"A"`` when shapes change.
        groups, base_width: ResNeXt cardinality and width per group (defaults 1 and 64).
        attention, position, attn_kwargs: as :class:`BasicBlock`; SCSA's ``"before_last_conv"`` is
            after conv2/bn2/ReLU (``width`` channels).
        spatial_dims: as :class:`BasicBlock`.
        device, dtype: factory keywords.

    State-dict keys are torchvision's (``conv1..3``, ``bn1..3``, ``downsample.0/1``), plus ``attn.*``.
    """

    expansion = 4

    def __init__(
        self,
        in_chs: int,
        planes: int,
        stride: int = 1,
        *,
        shortcut: str = "B",
        groups: int = 1,
        base_width: int = 64,
        attention: AttentionSpec = None,
        position: str | None = None,
        attn_kwargs: dict[str, Any] | None = None,
        spatial_dims: int = 2,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_int("groups", groups, minimum=1)
        check_int("base_width", base_width, minimum=1)
        f = {"device": device, "dtype": dtype}
        d, norm = {"spatial_dims": spatial_dims}, batch_norm_nd(spatial_dims)
        width = int(planes * (base_width / 64.0)) * groups
        out_chs = planes * self.expansion
        self.stride = stride
        self.spatial_dims = spatial_dims
        self.conv1 = conv_no_bias(in_chs, width, 1, **d, **f)
        self.bn1 = norm(width, **f)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = conv_no_bias(width, width, 3, stride, groups=groups, **d, **f)
        self.bn2 = norm(width, **f)
        self.act2 = nn.ReLU(inplace=True)
        self.conv3 = conv_no_bias(width, out_chs, 1, **d, **f)
        self.bn3 = norm(out_chs, **f)
        self.downsample = make_shortcut(shortcut, in_chs, out_chs, stride, **d, **f)
        self.act3 = nn.ReLU(inplace=True)
        self._group_channels = (width, width, out_chs)
        self.set_attention(attention, position, attn_kwargs, **f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.attend(self.act1(self.bn1(self.conv1(x))), after=0)
        y = self.attend(self.act2(self.bn2(self.conv2(y))), after=1)
        y = self.attend(self.bn3(self.conv3(y)), after=2)
        return self.act3(y + self.downsample(x))

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn3.weight)


class PreActBasicBlock(ResidualBlock):
    """Wide ResNet's pre-activation block: BN → ReLU → conv1 → BN → ReLU → dropout → conv2, plus shortcut.

    When the shape changes the shortcut (a 1×1 conv, no BN: ``"B"``; or ``"A"``) takes the
    pre-activated input, as Zagoruyko & Komodakis's code does; otherwise it is the identity on ``x``.
    ``"end"`` is after conv2 (the branch has no norm after its last conv); ``"before_last_conv"`` and
    ``"after_conv1"`` are after conv1 → bn2 → ReLU, before the dropout.

    Args:
        in_chs: input channels.
        planes: output channels.
        stride: stride of conv1 (and of the shortcut).
        shortcut: ``"B"`` (1×1 conv, default) or ``"A"``.
        drop_rate: dropout between the convs (default 0; the WRN paper uses 0.3 on some datasets).
        groups, base_width: must stay 1 and 64.
        attention, position, attn_kwargs, spatial_dims, device, dtype: as :class:`BasicBlock`.

    ``zero_init_last`` zeroes conv2's weight (there is no last BN), as timm does for pre-activation blocks.
    """

    expansion = 1

    def __init__(
        self,
        in_chs: int,
        planes: int,
        stride: int = 1,
        *,
        shortcut: str = "B",
        drop_rate: float = 0.0,
        groups: int = 1,
        base_width: int = 64,
        attention: AttentionSpec = None,
        position: str | None = None,
        attn_kwargs: dict[str, Any] | None = None,
        spatial_dims: int = 2,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError(
                f"PreActBasicBlock takes groups=1 and base_width=64 only, got groups={groups}, "
                f"base_width={base_width}"
            )
        check_float("drop_rate", drop_rate, low=0, high=1, high_open=True)
        f = {"device": device, "dtype": dtype}
        d, norm = {"spatial_dims": spatial_dims}, batch_norm_nd(spatial_dims)
        self.stride = stride
        self.spatial_dims = spatial_dims
        self.bn1 = norm(in_chs, **f)
        self.act1 = nn.ReLU(inplace=True)
        self.conv1 = conv_no_bias(in_chs, planes, 3, stride, **d, **f)
        self.bn2 = norm(planes, **f)
        self.act2 = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(drop_rate)
        self.conv2 = conv_no_bias(planes, planes, 3, **d, **f)
        self.downsample = make_shortcut(shortcut, in_chs, planes, stride, norm=False, **d, **f)
        # Whether the shortcut sees the pre-activated input (set once; not an attention switch).
        self.shortcut_preact = not isinstance(self.downsample, nn.Identity)
        self._group_channels = (planes, planes)
        self.set_attention(attention, position, attn_kwargs, **f)

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.conv2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.act1(self.bn1(x))
        shortcut = self.downsample(o) if self.shortcut_preact else x
        y = self.attend(self.act2(self.bn2(self.conv1(o))), after=0)
        y = self.attend(self.conv2(self.drop(y)), after=1)
        return y + shortcut


def _attention_modules(model: nn.Module) -> set[int]:
    """ids of every module inside a block's attention (they keep their own initialisation)."""
    ids: set[int] = set()
    for m in model.modules():
        if isinstance(m, ResidualBlock):
            ids.update(id(sub) for sub in m.attn.modules())
    return ids


def init_weights(
    model: nn.Module, *, linear_std: float | None = None, zero_init_residual: bool = False
) -> None:
    """The papers' code's initialisation of a backbone, leaving attention modules as they built themselves.

    * Conv1d/2d/3d: Kaiming-normal, ``mode="fan_out"``, ReLU gain (He et al. 2015,
      https://arxiv.org/abs/1502.01852; torchvision's and the reference CIFAR codes' choice); biases 0.
    * BatchNorm (1-D, 2-D, 3-D)/GroupNorm: weight 1, bias 0.
    * Linear: PyTorch's default when ``linear_std`` is ``None`` (torchvision ResNet), else
      ``N(0, linear_std²)`` with bias 0 (torchvision MobileNetV2: 0.01).
    * ``zero_init_residual``: then zero the last BN of every residual branch (Goyal et al. 2017,
      https://arxiv.org/abs/1706.02677), so each residual block starts as (nearly) the identity.
    """
    skip = _attention_modules(model)
    modules: Iterable[nn.Module] = (m for m in model.modules() if id(m) not in skip)
    for m in modules:
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear_std is not None:
            nn.init.normal_(m.weight, 0, linear_std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    if zero_init_residual:
        for m in model.modules():
            if isinstance(m, ResidualBlock):
                m.zero_init_last()
