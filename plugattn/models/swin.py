"""Swin Transformer: a hierarchy of shifted-window transformer stages, with one attention hook per stage.

Z. Liu, Y. Lin, Y. Cao, H. Hu, Y. Wei, Z. Zhang, S. Lin, B. Guo, "Swin Transformer: Hierarchical Vision
Transformer using Shifted Windows", ICCV 2021, https://arxiv.org/abs/2103.14030; the authors' code:
https://github.com/microsoft/Swin-Transformer. The block (eqs. 1-3: W-MSA/SW-MSA with the relative
position bias, the shift mask, the MLP) is :mod:`plugattn.models.swin_block`.

The network, for an ``H × W`` image (tokens ``(B, h, w, C)`` throughout):

    patch_embed   4×4 conv, stride 4, ``in_chans → C``; LayerNorm         (B, H/4, W/4, C)
    layers.0      depths[0] blocks, alternately W-MSA and SW-MSA        (B, H/4, W/4, C)
    layers.i      patch merging (2×2 tokens → LayerNorm(4C) → Linear),
                  then depths[i] blocks                                 (B, H/2^(i+2), W/2^(i+2), 2^i C)
    norm, pool    LayerNorm, mean over the tokens                       (B, 8C)
    head.fc       Linear(8C, num_classes)

Swin-T: ``C = 96``, depths ``(2, 2, 6, 2)``, heads ``(3, 6, 12, 24)`` (32 channels per head), window 7,
224×224 inputs, stochastic depth rising linearly over the blocks to 0.2; Swin-S: depths
``(2, 2, 18, 2)``, 0.3. With 1000 classes: 28,288,354 and 49,606,258 parameters, timm's counts for
``swin_tiny/small_patch4_window7_224`` (the authors' model zoo: 28M, 50M). State-dict keys are timm's,
so its weights load strictly (``tests/interop/test_swin_timm.py``: same logits and features).

Attention: each stage ``layers.i`` has one hook ``attn`` (a 2-D module on ``2^i C`` channels; ``nn.Identity``
without attention), applied to the stage's token map converted to ``(B, C, h, w)`` (a permuted view, so
channels-last memory) and back. ``position`` (the same for every stage):

* ``"stage_end"`` (default, every module, SCSA included): after the stage's last block — the stage's
  output, the map ``features_only`` returns, before the next stage's patch merging;
* ``"after_merging"``: after the stage's patch merging, before its first block (``layers.0`` has no
  merging: after the patch embedding).

Differences from the paper and timm:

* The attention hook and its positions are plugattn's: Swin has no such module, SCSA's paper, which
  reports Swin-T results, says nothing of where SCSA went, and its authors released no Swin code
  (docs/swin.md).
* Inputs are exactly ``img_size`` (the shift masks are built for it), as timm's default
  ``strict_img_size``; ``img_size`` must be a multiple of ``patch_size · 2^(stages − 1)`` and every
  stage's map a multiple of its (clipped) window, else ``ValueError`` — timm pads instead.
* Initialisation as timm's: linear weights truncated-normal ``σ = 0.02`` (±2), biases 0, LayerNorm 1/0,
  relative bias tables truncated-normal ``σ = 0.02``, the patch conv PyTorch's default. Attention
  modules keep their own initialisation.
* Stochastic depth, classifier dropout (``drop_rate``, default 0) and no other dropout (timm's
  ``attn_drop_rate``/``proj_drop_rate`` are 0 in its Swin configs).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from plugattn._checks import check_bool, check_choice, check_divisible, check_float, check_int
from plugattn.attention.registry import AttentionSpec
from plugattn.models.blocks import build_attention
from plugattn.models.features import FeatureInfo
from plugattn.models.placement import POSITIONS, check_stages, is_empty, naming_the_block
from plugattn.models.registry import register_model
from plugattn.models.swin_block import Pair, PatchMerging, SwinBlock, clipped_window

__all__ = [
    "SWIN_POSITIONS",
    "SWIN_VARIANTS",
    "PatchEmbed",
    "SwinStage",
    "SwinTransformer",
    "check_swin_position",
]

SWIN_POSITIONS = ("stage_end", "after_merging")

# name: the paper's configuration (§3.3, architecture variants) and its ImageNet-1K stochastic depth.
SWIN_VARIANTS: dict[str, dict[str, Any]] = {
    "swin_t": {"embed_dim": 96, "depths": (2, 2, 6, 2), "num_heads": (3, 6, 12, 24), "window_size": 7,
               "img_size": 224, "drop_path_rate": 0.2},
    "swin_s": {"embed_dim": 96, "depths": (2, 2, 18, 2), "num_heads": (3, 6, 12, 24), "window_size": 7,
               "img_size": 224, "drop_path_rate": 0.3},
}  # fmt: skip


def check_swin_position(position: Any) -> str:
    """``position`` is one of :data:`SWIN_POSITIONS`; the convolutional blocks' positions are refused."""
    if isinstance(position, str) and position in POSITIONS:
        raise ValueError(
            f"position {position!r} names a place in a convolutional block; a Swin stage has none: position "
            f"must be one of 'stage_end' (after the stage's last block; the default) or 'after_merging' "
            f"(after its patch merging, before its first block)"
        )
    return check_choice("position", position, SWIN_POSITIONS)


def _as_pair(name: str, value: Any) -> Pair:
    """An int ``n`` (``(n, n)``) or a pair of ints, each at least 1."""
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an integer or a pair (height, width), got {value!r}")
        return check_int(f"{name}[0]", value[0], minimum=1), check_int(f"{name}[1]", value[1], minimum=1)
    value = check_int(name, value, minimum=1)
    return value, value


def _check_layout(embed_dim: int, depths: Sequence[int], num_heads: Sequence[int]) -> list[int]:
    """The stage widths ``embed_dim · 2^i``, each divisible by its heads."""
    check_int("embed_dim", embed_dim, minimum=1)

    def is_seq(v: Any) -> bool:
        return isinstance(v, Sequence) and not isinstance(v, (str, bytes)) and len(v) > 0

    if not is_seq(depths) or not is_seq(num_heads) or len(depths) != len(num_heads):
        raise ValueError(
            f"depths and num_heads must be non-empty sequences of equal length (one entry per stage), got "
            f"depths={depths!r}, num_heads={num_heads!r}"
        )
    widths = []
    for i, (n, h) in enumerate(zip(depths, num_heads, strict=True)):
        check_int(f"depths[{i}]", n, minimum=1)
        width = embed_dim * 2**i
        if width % check_int(f"num_heads[{i}]", h, minimum=1):
            raise ValueError(
                f"embed_dim={embed_dim} gives stage {i} {width} channels, which num_heads[{i}]={h} does not "
                f"divide; embed_dim · 2^i must be divisible by num_heads[i] in every stage"
            )
        widths.append(width)
    return widths


def _windows_fit(sizes: Sequence[Pair], window: int) -> bool:
    """Whether ``window``, clipped per stage, tiles every stage's map."""
    return all(
        side % m == 0 for size in sizes for side, m in zip(size, clipped_window(size, window)[0], strict=True)
    )


def _stage_sizes(img_size: Pair, patch_size: int, window: int, num_stages: int) -> list[Pair]:
    """The token map of every stage, checked: the mergings halve even sides, the windows tile the maps."""
    factor = patch_size * 2 ** (num_stages - 1)
    for side in img_size:
        check_divisible("img_size", side, patch_size, "patch_size")
        if side % factor:
            raise ValueError(
                f"img_size must be divisible by patch_size · 2^(stages − 1) = {factor} (the patch size and "
                f"the {num_stages - 1} patch mergings, which halve the map), got img_size={img_size}"
            )
    grid = (img_size[0] // patch_size, img_size[1] // patch_size)
    sizes = [(grid[0] >> i, grid[1] >> i) for i in range(num_stages)]
    if not _windows_fit(sizes, window):
        fitting = [m for m in range(1, max(sizes[0]) + 1) if _windows_fit(sizes, m)]
        raise ValueError(
            f"window_size={window} does not tile the stages' token maps {[f'{h}×{w}' for h, w in sizes]} "
            f"(img_size={img_size}, patch_size={patch_size}): each side must be a multiple of the window or "
            f"at most the window; window sizes that fit: {fitting}"
        )
    return sizes


class PatchEmbed(nn.Module):
    """``patch_size``² patches, linearly embedded (a conv with stride = kernel) and LayerNorm-ed:
    ``(B, in_chans, H, W)`` → ``(B, H/p, W/p, embed_dim)``. Keys ``proj``, ``norm`` (timm's)."""

    def __init__(
        self,
        img_size: Pair,
        patch_size: int,
        in_chans: int,
        embed_dim: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        f = {"device": device, "dtype": dtype}
        self.img_size = img_size
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, patch_size, **f)
        self.norm = nn.LayerNorm(embed_dim, **f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.img_size:
            h, w = x.shape[-2:]
            raise ValueError(
                f"the input is {h}×{w}, but this Swin Transformer was built for img_size={self.img_size} "
                f"(its shift masks are fixed by it); build it with img_size=({h}, {w})"
            )
        return self.norm(self.proj(x).permute(0, 2, 3, 1))  # (B, C, h, w) -> (B, h, w, C)


class SwinStage(nn.Module):
    """Patch merging (``downsample``, absent in the first stage), ``depth`` blocks and the attention hook.

    Args:
        dim, out_dim: channels in and out (equal without merging).
        depth: blocks; the odd ones (1, 3, ...) use shifted windows.
        num_heads, window, mlp_ratio: of every block.
        size: the ``(h, w)`` map of the blocks (after the merging).
        drop_path: the stochastic-depth probability of each block.
        downsample: merge 2×2 patches first.
        attention, position, attn_kwargs: the attention module (name, class, factory or ``None``) on the
            ``out_dim``-channel map, at ``"stage_end"`` (default) or ``"after_merging"``, and its options.
        device, dtype: factory keywords.

    Keys: ``downsample.*``, ``blocks.j.*`` (timm's ``SwinTransformerStage``), plus ``attn.*``.
    """

    def __init__(
        self,
        dim: int,
        out_dim: int,
        *,
        depth: int,
        num_heads: int,
        window: int,
        size: Pair,
        drop_path: Sequence[float],
        downsample: bool,
        mlp_ratio: float = 4.0,
        attention: AttentionSpec = None,
        position: str | None = None,
        attn_kwargs: dict[str, Any] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        f = {"device": device, "dtype": dtype}
        self.downsample = PatchMerging(dim, out_dim, **f) if downsample else nn.Identity()
        self.blocks = nn.Sequential(*(
            SwinBlock(out_dim, num_heads, size, window, shifted=j % 2 == 1, mlp_ratio=mlp_ratio,
                      drop_path=drop_path[j], **f)
            for j in range(depth)
        ))  # fmt: skip
        self.attn_position = check_swin_position("stage_end" if position is None else position)
        self._attn_after = {"after_merging": 0, "stage_end": 1}[self.attn_position]  # attend(after=...)
        try:
            self.attn = build_attention(attention, out_dim, attn_kwargs, **f)
        except ValueError as err:
            raise ValueError(f"attention on this stage's {out_dim}-channel map: {err}") from err

    @property
    def has_attention(self) -> bool:
        return not is_empty(self.attn)

    def attend(self, x: torch.Tensor, *, after: int) -> torch.Tensor:
        """``attn`` on the ``(B, h, w, C)`` tokens seen as ``(B, C, h, w)``, if it sits after ``after``."""
        if after != self._attn_after:
            return x
        return self.attn(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)  # (B, C, h, w) and back

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.attend(self.downsample(x), after=0)
        return self.attend(self.blocks(x), after=1)

    def extra_repr(self) -> str:
        return f"attn_position={self.attn_position!r}"


class SwinTransformer(nn.Module):
    """Swin Transformer with one attention module per stage.

    Args:
        img_size: input height and width (an int or a pair); inputs must have exactly this size.
        patch_size: side of the embedded patches (4).
        in_chans: input channels (3).
        num_classes: classifier outputs (1000).
        embed_dim: channels ``C`` of the first stage (96); stage ``i`` has ``C · 2^i``.
        depths: blocks per stage (Swin-T ``(2, 2, 6, 2)``).
        num_heads: attention heads per stage (``(3, 6, 12, 24)``).
        window_size: the window side ``M`` (7), clipped where a map is smaller.
        mlp_ratio: MLP hidden width over the token width (4).
        drop_path_rate: stochastic depth of the last block, rising linearly from 0 at the first (0.2).
        drop_rate: dropout before the classifier (0).
        attention: attention module for the stages (name, class, factory or ``None``).
        position: ``"stage_end"`` (default, every module) or ``"after_merging"``.
        stages: 0-based stage indices that get attention; ``None`` = all.
        attn_kwargs: keyword options of the attention module.
        features_only: no final norm and classifier; ``forward`` returns every stage's output as
            ``(B, C · 2^i, H / 2^(i+2), W / 2^(i+2))`` (contiguous NCHW), described by ``feature_info``.
        device, dtype: factory keywords.
    """

    def __init__(
        self,
        *,
        img_size: int | Sequence[int] = 224,
        patch_size: int = 4,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.2,
        drop_rate: float = 0.0,
        attention: AttentionSpec = None,
        position: str | None = None,
        stages: Sequence[int] | None = None,
        attn_kwargs: dict[str, Any] | None = None,
        features_only: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        widths = _check_layout(embed_dim, depths, num_heads)
        check_int("in_chans", in_chans, minimum=1)
        check_int("num_classes", num_classes, minimum=1)
        check_float("drop_path_rate", drop_path_rate, low=0, high=1, high_open=True)
        check_float("drop_rate", drop_rate, low=0, high=1, high_open=True)
        if position is not None:
            check_swin_position(position)
        if attn_kwargs is not None and not isinstance(attn_kwargs, Mapping):
            raise ValueError(
                f"attn_kwargs must be a dict of the attention's options or None, got {attn_kwargs!r}"
            )
        with_attention = check_stages(stages, len(depths))
        self.img_size = _as_pair("img_size", img_size)
        patch_size = check_int("patch_size", patch_size, minimum=1)
        sizes = _stage_sizes(
            self.img_size, patch_size, check_int("window_size", window_size, minimum=1), len(depths)
        )
        self.features_only = check_bool("features_only", features_only)
        f = {"device": device, "dtype": dtype}

        self.patch_embed = PatchEmbed(self.img_size, patch_size, in_chans, embed_dim, **f)
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()  # one per block, in order
        self.feature_info = FeatureInfo()
        self.layers = nn.Sequential()
        in_dim, note = embed_dim, f"the stage widths here are {widths}"
        for i, (depth, heads, width, size) in enumerate(zip(depths, num_heads, widths, sizes, strict=True)):
            attn = attention if i in with_attention else None
            start = sum(depths[:i])
            with naming_the_block(f"layers.{i}", note):
                self.layers.append(SwinStage(
                    in_dim, width, depth=depth, num_heads=heads, window=window_size, size=size,
                    drop_path=rates[start : start + depth], downsample=i > 0, mlp_ratio=mlp_ratio,
                    attention=attn, position=position if attn is not None else None,
                    attn_kwargs=attn_kwargs, **f,
                ))  # fmt: skip
            in_dim = width
            self.feature_info.append(
                {"num_chs": width, "reduction": patch_size * 2**i, "module": f"layers.{i}"}
            )
        self.num_features = in_dim
        if not self.features_only:
            self.norm = nn.LayerNorm(in_dim, **f)
            self.head = nn.Sequential(
                OrderedDict(drop=nn.Dropout(drop_rate), fc=nn.Linear(in_dim, num_classes, **f))
            )
        _init_weights(self)

    def no_weight_decay(self) -> set[str]:
        """The parameters the paper trains without weight decay (timm's name): the relative bias tables."""
        return {n for n, _ in self.named_parameters() if n.endswith("relative_position_bias_table")}

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of every stage as ``(B, num_chs_i, H / reduction_i, W / reduction_i)``."""
        x = self.patch_embed(x)
        features = []
        for stage in self.layers:
            x = stage(x)
            features.append(x.permute(0, 3, 1, 2).contiguous())  # (B, h, w, C) -> (B, C, h, w)
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if self.features_only:
            return self.forward_features(x)
        x = self.norm(self.layers(self.patch_embed(x)))  # (B, H/32, W/32, 8C)
        return self.head(x.mean(dim=(1, 2)))  # (B, num_classes)


def _init_weights(model: SwinTransformer) -> None:
    """timm's Swin initialisation (module docstring) of every linear layer outside the attention hooks."""
    skip = {id(m) for stage in model.layers for m in stage.attn.modules()}
    for m in model.modules():
        if isinstance(m, nn.Linear) and id(m) not in skip:
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


_LIU = "Liu et al., ICCV 2021, https://arxiv.org/abs/2103.14030"
for _name, _config in SWIN_VARIANTS.items():
    register_model(_name, SwinTransformer, _config, num_classes=1000, paper=_LIU, family="swin")
