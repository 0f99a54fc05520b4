"""RepVGG: three parallel branches while training, one 3×3 conv per block once re-parameterised.

X. Ding, X. Zhang, N. Ma, J. Han, G. Ding, J. Sun, "RepVGG: Making VGG-style ConvNets Great Again",
CVPR 2021, https://arxiv.org/abs/2101.03697; the authors' code: https://github.com/DingXiaoH/RepVGG.

A block with input ``x`` (``C_in`` channels) and stride ``s`` computes, in its training form,

    y = ReLU(A(BN_3(W_3 ⊛ x) + BN_1(W_1 ⊛ x) + BN_0(x)))                                   (1)

``W_3`` a 3×3 conv (padding 1), ``W_1`` a 1×1 conv (padding 0), both of stride ``s`` and without bias;
the identity branch ``BN_0`` exists only when ``C_in = C_out`` and ``s = 1``; ``A`` is the block's
attention hook (``nn.Identity`` when absent). In eval mode a BN is an affine map of its input with its
running ``μ, σ²``, so it folds into the conv before it, per output channel:

    BN(W ⊛ x) = W' ⊛ x + b',   W' = t · W,   b' = β − μ · t,   t = γ / √(σ² + ε)                (2)

A 1×1 kernel is the centre of a 3×3 kernel that is zero elsewhere (``pad_1``), and the identity is the
3×3 kernel ``I[o, i, 1, 1] = δ_oi``, so the three branches are one 3×3 conv with bias:

    W = W_3' + pad_1(W_1') + I',   b = b_3' + b_1' + b_0',   y = ReLU(A(W ⊛ x + b))           (3)

(``I', b_0'``: eq. (2) applied to ``I`` and ``BN_0``). :meth:`RepVGG.reparameterize` (timm's name; also
the function :func:`reparameterize`) does this in place in every block; ``deploy=True`` builds that
form directly, and a fused model's state dict loads into it.

The network (the paper's architectural specification): five stages, the first block of each with
stride 2 (so stage ``i`` is at reduction ``2^(i+1)``), widths ``min(64, 64a), 64a, 128a, 256a, 512b``,
depths ``(1, 2, 4, 14, 1)`` (RepVGG-A) or ``(1, 4, 6, 16, 1)`` (RepVGG-B), global average pool and a
linear classifier. The first stage is the paper's one-block "stage 1" (there is no other stem). With
1000 classes RepVGG-A0 has 9,108,968 parameters in its training form and 8,309,384 deployed: the
paper's table (8.30M) lists the deployed counts, truncated to two decimals (docs/repvgg.md).

Differences from the paper:

* Attention: RepVGG-A/B have none. ``A`` in eq. (1) sits after the branch sum and before the ReLU
  (``"end"``, the default for every module), where the authors' own RepVGG-D2se puts its SE
  (``nonlinearity(se(dense(x) + 1x1(x) + id(x)))``), and where timm's ``RepVggBlock`` has its
  (experimental) ``attn``; placing other modules there is plugattn's choice.
  ``"after_act"`` puts it after the ReLU. Both lie outside the linear part that eq. (3) fuses, so both
  survive re-parameterisation; a module on a single branch would not, and positions naming one
  (``"before_last_conv"``, ``"after_convK"``) raise ``ValueError``. SCSA's paper place
  (``"before_last_conv"``) has no counterpart here, so SCSA also defaults to ``"end"``.
* Initialisation: :func:`~plugattn.models.blocks.init_weights` with ``linear_std=0.01`` (convs
  Kaiming-normal fan_out, BN 1/0, classifier ``N(0, 0.01²)``, as plugattn's other backbones); the
  authors' code keeps PyTorch's defaults, timm draws the blocks' BN weights from ``N(0.1, 0.1²)``.
  Attention modules keep their own initialisation.
* Not provided: B1–B3, the grouped variants (``g2``/``g4``), RepVGG-D2se's SE and its wider layout, the
  authors' later "custom L2" on the equivalent kernel.
* Re-parameterising in training mode is allowed (as timm): eq. (2) always uses the running statistics,
  and the fused conv then trains as a plain conv, without BN.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from plugattn._checks import check_bool, check_choice, check_float, check_int
from plugattn.attention.registry import AttentionSpec
from plugattn.models.blocks import ResidualBlock, conv_no_bias, init_weights
from plugattn.models.features import FeatureInfo
from plugattn.models.placement import POSITIONS, check_stages, naming_the_block
from plugattn.models.registry import register_model

__all__ = [
    "REPVGG_POSITIONS",
    "REPVGG_VARIANTS",
    "RepVGG",
    "RepVGGBlock",
    "check_repvgg_position",
    "reparameterize",
    "repvgg_widths",
]

# "end": after the branch sum, before the ReLU (the default); "after_act": after the ReLU.
REPVGG_POSITIONS = ("end", "after_act")
_ON_A_BRANCH = tuple(p for p in POSITIONS if p not in REPVGG_POSITIONS)  # "before_last_conv", "after_convK"

REPVGG_A_DEPTHS = (1, 2, 4, 14, 1)
REPVGG_B_DEPTHS = (1, 4, 6, 16, 1)
# name: (depths, a, b) — the paper's width multipliers.
REPVGG_VARIANTS: dict[str, tuple[tuple[int, ...], float, float]] = {
    "repvgg_a0": (REPVGG_A_DEPTHS, 0.75, 2.5),
    "repvgg_a1": (REPVGG_A_DEPTHS, 1.0, 2.5),
    "repvgg_a2": (REPVGG_A_DEPTHS, 1.5, 2.75),
    "repvgg_b0": (REPVGG_B_DEPTHS, 1.0, 2.5),
}


def repvgg_widths(a: float, b: float) -> tuple[int, int, int, int, int]:
    """The five stage widths ``min(64, 64a), 64a, 128a, 256a, 512b``."""
    check_float("a", a, low=0, low_open=True)
    check_float("b", b, low=0, low_open=True)
    return min(64, int(64 * a)), int(64 * a), int(128 * a), int(256 * a), int(512 * b)


def check_repvgg_position(position: Any) -> str:
    """``position`` is one of :data:`REPVGG_POSITIONS`; a position on a single branch is refused."""
    if isinstance(position, str) and position in _ON_A_BRANCH:
        raise ValueError(
            f"position {position!r} would put the attention on one branch of a RepVGG block, which could "
            f"then not be fused into one conv; position must be one of 'end' (after the branch sum, "
            f"before the ReLU; the default) or 'after_act' (after the ReLU)"
        )
    return check_choice("position", position, REPVGG_POSITIONS)


def _conv_bn(in_chs: int, out_chs: int, kernel_size: int, stride: int, **f: Any) -> nn.Sequential:
    """A bias-free conv and its BN, keys ``conv``/``bn`` (timm's ``ConvNormAct``)."""
    conv = conv_no_bias(in_chs, out_chs, kernel_size, stride, **f)
    return nn.Sequential(OrderedDict(conv=conv, bn=nn.BatchNorm2d(out_chs, **f)))


def _fold_bn(kernel: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. (2): the kernel and bias of ``BN(kernel ⊛ x)`` with ``bn``'s running statistics."""
    t = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C_out,)
    return kernel * t.reshape(-1, 1, 1, 1), bn.bias - bn.running_mean * t


class RepVGGBlock(ResidualBlock):
    """RepVGG's block: eq. (1) while training, eq. (3) after :meth:`reparameterize`.

    Args:
        in_chs, out_chs: input and output channels.
        stride: stride of both convs (1 or 2); the identity branch exists when ``stride == 1`` and
            ``in_chs == out_chs``.
        deploy: build the fused form (one 3×3 conv with bias, ``reparam_conv``) instead of the branches.
        attention: the attention module (name, class, factory or ``None``), one per block.
        position: ``"end"`` (after the branch sum, before the ReLU; also for ``None``) or
            ``"after_act"`` (after the ReLU); single-branch positions raise ``ValueError``.
        attn_kwargs: keyword options of the attention module.
        device, dtype: factory keywords.

    Keys are timm's ``RepVggBlock``'s: ``conv_kxk.conv/bn``, ``conv_1x1.conv/bn``, ``identity`` (a BN),
    ``reparam_conv`` once fused, plus ``attn.*``.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        *,
        deploy: bool = False,
        attention: AttentionSpec = None,
        position: str | None = None,
        attn_kwargs: dict[str, Any] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_chs = check_int("in_chs", in_chs, minimum=1)
        self.out_chs = check_int("out_chs", out_chs, minimum=1)
        self.stride = check_choice("stride", stride, (1, 2))
        f = {"device": device, "dtype": dtype}
        self.conv_kxk: nn.Module | None = None
        self.conv_1x1: nn.Module | None = None
        self.identity: nn.Module | None = None
        self.reparam_conv: nn.Conv2d | None = None
        if check_bool("deploy", deploy):
            self.reparam_conv = nn.Conv2d(in_chs, out_chs, 3, stride, 1, **f)
        else:
            self.conv_kxk = _conv_bn(in_chs, out_chs, 3, stride, **f)
            self.conv_1x1 = _conv_bn(in_chs, out_chs, 1, stride, **f)
            if in_chs == out_chs and stride == 1:
                self.identity = nn.BatchNorm2d(out_chs, **f)
        self.act = nn.ReLU(inplace=True)
        self._group_channels = (out_chs,)
        self.set_attention(attention, "end" if position is None else position, attn_kwargs, **f)

    def attention_channels(self, position: str) -> int:
        check_repvgg_position(position)
        return self.out_chs

    def install_attention(self, module: nn.Module, position: str) -> None:
        # attend(after=0): after the branch sum; attend(after=1): after the ReLU.
        self._attn_after = REPVGG_POSITIONS.index(check_repvgg_position(position))
        self.attn = module
        self.attn_position = position

    @property
    def deployed(self) -> bool:
        """Whether the block is one conv (eq. 3)."""
        return self.reparam_conv is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.reparam_conv is not None:
            y = self.reparam_conv(x)  # eq. (3)
        else:
            y = self.conv_kxk(x) + self.conv_1x1(x)  # eq. (1)
            if self.identity is not None:
                y = y + self.identity(x)
        return self.attend(self.act(self.attend(y, after=0)), after=1)

    def fused_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``W`` (``(C_out, C_in, 3, 3)``) and ``b`` (``(C_out,)``) of eq. (3); the block is unchanged."""
        if self.reparam_conv is not None:
            return self.reparam_conv.weight, self.reparam_conv.bias
        kernel, bias = _fold_bn(self.conv_kxk.conv.weight, self.conv_kxk.bn)
        k1, b1 = _fold_bn(self.conv_1x1.conv.weight, self.conv_1x1.bn)
        kernel, bias = kernel + F.pad(k1, (1, 1, 1, 1)), bias + b1  # the 1×1 at the 3×3's centre
        if self.identity is not None:
            eye = torch.zeros_like(kernel)
            i = torch.arange(self.out_chs, device=eye.device)
            eye[i, i, 1, 1] = 1  # I[o, i, 1, 1] = δ_oi
            k0, b0 = _fold_bn(eye, self.identity)
            kernel, bias = kernel + k0, bias + b0
        return kernel, bias

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Replace the branches by one 3×3 conv with bias (eq. 3), in place; the attention stays.

        Uses the BNs' running statistics in either mode. A second call does nothing (the block already
        is one conv).
        """
        if self.reparam_conv is not None:
            return
        kernel, bias = self.fused_kernel_bias()
        f = {"device": kernel.device, "dtype": kernel.dtype}
        conv = nn.Conv2d(self.in_chs, self.out_chs, 3, self.stride, 1, **f)
        conv.weight.copy_(kernel)
        conv.bias.copy_(bias)
        for name in ("conv_kxk", "conv_1x1", "identity"):
            delattr(self, name)
            setattr(self, name, None)
        self.reparam_conv = conv

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, deployed={self.deployed}"


def reparameterize(model: nn.Module) -> nn.Module:
    """Fuse every :class:`RepVGGBlock` of ``model`` in place (eq. 3) and return ``model``.

    Attention modules are kept as they are; blocks already fused are left alone, so calling it twice is
    harmless. A model without RepVGG blocks raises ``ValueError``.
    """
    blocks = [m for m in model.modules() if isinstance(m, RepVGGBlock)]
    if not blocks:
        raise ValueError(f"reparameterize found no RepVGGBlock in {type(model).__name__}")
    for block in blocks:
        block.reparameterize()
    return model


def _check_layout(depths: Sequence[int], widths: Sequence[int]) -> None:
    def is_seq(v: Any) -> bool:
        return isinstance(v, Sequence) and not isinstance(v, (str, bytes)) and len(v) > 0

    if not is_seq(depths) or not is_seq(widths) or len(depths) != len(widths):
        raise ValueError(
            f"depths and widths must be non-empty sequences of equal length, got depths={depths!r}, "
            f"widths={widths!r}"
        )
    for i, (n, w) in enumerate(zip(depths, widths, strict=True)):
        check_int(f"depths[{i}]", n, minimum=1)
        check_int(f"widths[{i}]", w, minimum=1)


class RepVGG(nn.Module):
    """RepVGG with one attention module per block.

    Args:
        depths: blocks per stage (RepVGG-A ``(1, 2, 4, 14, 1)``, RepVGG-B ``(1, 4, 6, 16, 1)``).
        widths: channels per stage (:func:`repvgg_widths`); the first block of every stage has stride 2.
        num_classes: classifier outputs (default 1000).
        in_chans: input channels (default 3).
        attention: attention module for the blocks (name, class, factory, or ``None``).
        position: ``"end"`` (after the branch sum, before the ReLU; the default for every module,
            SCSA included) or ``"after_act"`` (after the ReLU).
        stages: 0-based stage indices that get attention; ``None`` = all five.
        attn_kwargs: keyword options of the attention module.
        deploy: build the fused form (one 3×3 conv with bias per block); a reparameterised model's
            state dict loads into it.
        features_only: no classifier; ``forward`` returns the stage outputs, described by
            ``feature_info`` (reductions 2, 4, 8, 16, 32 with five stages).
        device, dtype: factory keywords.

    Stages are ``stages.0`` … ``stages.4``; the head is ``global_pool`` and ``classifier``. There is no
    ``zero_init_residual``: no branch of a RepVGG block is added to a shortcut of its own.
    """

    def __init__(
        self,
        *,
        depths: Sequence[int],
        widths: Sequence[int],
        num_classes: int = 1000,
        in_chans: int = 3,
        attention: AttentionSpec = None,
        position: str | None = None,
        stages: Sequence[int] | None = None,
        attn_kwargs: dict[str, Any] | None = None,
        deploy: bool = False,
        features_only: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _check_layout(depths, widths)
        check_int("num_classes", num_classes, minimum=1)
        check_int("in_chans", in_chans, minimum=1)
        if position is not None:
            check_repvgg_position(position)
        if attn_kwargs is not None and not isinstance(attn_kwargs, Mapping):
            raise ValueError(
                f"attn_kwargs must be a dict of the attention's options or None, got {attn_kwargs!r}"
            )
        with_attention = check_stages(stages, len(depths))
        check_bool("deploy", deploy)
        self.features_only = check_bool("features_only", features_only)
        f = {"device": device, "dtype": dtype}

        in_chs, reduction = in_chans, 1
        self.feature_info = FeatureInfo()
        self.stages = nn.Sequential()
        widths_note = f"the stage widths here are {list(widths)}"
        for i, (depth, width) in enumerate(zip(depths, widths, strict=True)):
            attn = attention if i in with_attention else None
            blocks = []
            for j in range(depth):
                with naming_the_block(f"stages.{i}.{j}", widths_note):
                    blocks.append(RepVGGBlock(
                        in_chs, width, 2 if j == 0 else 1, deploy=deploy, attention=attn,
                        position=position if attn is not None else None, attn_kwargs=attn_kwargs, **f,
                    ))  # fmt: skip
                in_chs = width
            reduction *= 2
            self.stages.append(nn.Sequential(*blocks))
            self.feature_info.append({"num_chs": in_chs, "reduction": reduction, "module": f"stages.{i}"})
        self.num_features = in_chs
        if not features_only:
            self.global_pool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Linear(in_chs, num_classes, **f)
        init_weights(self, linear_std=0.01)

    @property
    def deployed(self) -> bool:
        """Whether every block is one conv (after :meth:`reparameterize`, or built with ``deploy=True``)."""
        return all(b.deployed for b in self.modules() if isinstance(b, RepVGGBlock))

    def reparameterize(self) -> RepVGG:
        """Fuse every block in place (eq. 3), attention kept; see :func:`reparameterize`."""
        return reparameterize(self)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of every stage, ``(B, num_chs_i, H / reduction_i, W / reduction_i)``."""
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        features = self.forward_features(x)
        if self.features_only:
            return features
        return self.classifier(torch.flatten(self.global_pool(features[-1]), 1))  # (B, num_classes)


_DING = "Ding et al., CVPR 2021, https://arxiv.org/abs/2101.03697"
for _name, (_depths, _a, _b) in REPVGG_VARIANTS.items():
    register_model(
        _name,
        RepVGG,
        {"depths": _depths, "widths": repvgg_widths(_a, _b)},
        num_classes=1000,
        paper=_DING,
        family="repvgg",
    )
