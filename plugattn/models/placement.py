"""Where attention goes in a residual branch: one vocabulary for our blocks and for retrofitting.

A block's residual branch is a sequence of *conv groups* — a convolution with the BatchNorm and the
activation that follow it (if any). A position names the group after which the attention module is
applied:

=====================  ============================================================================
position               the attention sees the output of ...
=====================  ============================================================================
``"end"``              the branch's last group (after its last BatchNorm), before the shortcut add
``"before_last_conv"`` the group before the last conv (SCSA's place: BasicBlock after conv1/bn1/ReLU,
                       Bottleneck after conv2/bn2/ReLU, MobileNetV2 after the depthwise conv/BN/ReLU6)
``"after_conv1"``      the first group (conv1 → bn1 → act1)
``"after_conv2"``      the second group (in a BasicBlock the last one, so equal to ``"end"``)
``"after_conv3"``      the third group (blocks with three convs only)
=====================  ============================================================================

``after_convK`` follows mmcv/mmdet's plugin positions: after convK, its norm and (except for the
branch's last conv) its activation.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from torch import nn

from plugattn._checks import check_choice, check_int
from plugattn._registry import is_no_attention
from plugattn.attention.registry import AttentionSpec, attention_entry, attention_name_of

__all__ = ["POSITIONS", "check_stages", "default_position", "group_index", "naming_the_block"]

# Every position a block offers (the table above); a module's default is one of the first two.
POSITIONS = ("end", "before_last_conv", "after_conv1", "after_conv2", "after_conv3")


@contextmanager
def naming_the_block(where: str, context: str = "") -> Iterator[None]:
    """A block that cannot be built (usually attention options that do not fit a stage's width) says
    which block it is, and what the user can change."""
    try:
        yield
    except ValueError as err:
        advice = (
            "give attention_kwargs that fit each stage with attention, or leave this stage out with "
            "stages=[...] (model_kwargs)"
        )
        raise ValueError(f"{where}: {err}; {f'{context}: ' if context else ''}{advice}") from err


def default_position(attention: AttentionSpec) -> str:
    """The paper position of ``attention``: its registry entry's, ``"end"`` for anything unregistered."""
    if is_no_attention(attention):
        return "end"
    name = attention if isinstance(attention, str) else attention_name_of(attention)
    return attention_entry(name).position if name is not None else "end"


def group_index(position: str, num_groups: int, block: str) -> int:
    """Index of the conv group after which ``position`` puts the attention, in a branch of ``num_groups``.

    ``block`` names the block in the error raised when the branch has no such conv.
    """
    check_choice("position", position, POSITIONS)
    if position == "end":
        return num_groups - 1
    if position == "before_last_conv":
        if num_groups < 2:
            raise ValueError(f"position 'before_last_conv' needs two convs in the branch; {block} has one")
        return num_groups - 2
    k = int(position.removeprefix("after_conv"))
    if k > num_groups:
        raise ValueError(
            f"position {position!r} needs {k} convs in the residual branch; {block} has {num_groups} "
            f"(use one of 'end', 'before_last_conv', "
            f"{', '.join(repr(f'after_conv{i + 1}') for i in range(num_groups))})"
        )
    return k - 1


def check_stages(stages: Sequence[int] | None, num_stages: int) -> frozenset[int]:
    """The stage indices (0-based) that get attention; ``None`` means every stage."""
    if stages is None:
        return frozenset(range(num_stages))
    if isinstance(stages, (str, bytes)) or not isinstance(stages, Sequence | set | frozenset):
        raise ValueError(
            f"stages must be a sequence of stage indices in [0, {num_stages - 1}], got {stages!r}"
        )
    for s in stages:
        check_int("stages entry", s)
        if not 0 <= s < num_stages:
            raise ValueError(
                f"stages entries must lie in [0, {num_stages - 1}] (this model has {num_stages} stages), "
                f"got {s} in stages={tuple(stages)!r}"
            )
    return frozenset(stages)


def is_empty(module: nn.Module | None) -> bool:
    """Whether an attention hook holds nothing (``None`` as in timm, or ``nn.Identity``)."""
    return module is None or type(module) is nn.Identity
