"""Optimisers and learning-rate schedules.

Schedules are per-iteration multipliers of the base learning rate (``LambdaLR`` stepped once per
batch), so warm-up and decay are smooth and a resumed run continues from the exact step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from plugattn._checks import check_choice, check_float, check_int

__all__ = ["OPTIMIZERS", "SCHEDULES", "build_optimizer", "build_scheduler", "lr_multiplier"]

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("step", "cosine", "onecycle", "constant")


def _split_decay(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Parameters with weight decay, and those without: norm weights and every bias (1-D tensors and
    scalars such as HAM's α, β and RCCA's γ)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return decay, no_decay


def build_optimizer(
    model: nn.Module,
    name: str = "sgd",
    *,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    nesterov: bool = False,
    decay_norm_and_bias: bool = True,
    betas: tuple[float, float] = (0.9, 0.999),
) -> torch.optim.Optimizer:
    """SGD (momentum) or AdamW.

    Args:
        name: ``"sgd"`` or ``"adamw"``.
        lr: base learning rate (the schedule multiplies it).
        momentum: SGD momentum; nesterov: Nesterov momentum.
        weight_decay: L2 (SGD) or decoupled (AdamW) decay.
        decay_norm_and_bias: ``True`` (the papers' recipes) decays every parameter; ``False`` exempts
            norm weights, biases and scalar parameters.
    """
    check_choice("optimizer", name, OPTIMIZERS)
    check_float("lr", lr, low=0, low_open=True)
    check_float("weight_decay", weight_decay, low=0)
    check_float("momentum", momentum, low=0, high=1, high_open=True)
    if decay_norm_and_bias:
        groups = [
            {"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}
        ]
    else:
        decay, no_decay = _split_decay(model)
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov)
    return torch.optim.AdamW(groups, lr=lr, betas=betas)


def lr_multiplier(
    schedule: str,
    *,
    total_steps: int,
    steps_per_epoch: int,
    warmup_steps: int = 0,
    milestones: Sequence[float] = (),
    gamma: float = 0.1,
    min_lr_ratio: float = 0.0,
) -> Callable[[int], float]:
    """The multiplier of the base lr at optimisation step ``t`` (0-based).

    * ``step``: ``gamma ** (number of milestones, in epochs, reached)``.
    * ``cosine``: half a cosine from 1 to ``min_lr_ratio`` over the steps after warm-up.
    * ``onecycle``: linear from ``min_lr_ratio`` up to 1 during warm-up (at least 30% of the run if no
      warm-up is given), then a cosine down to ``min_lr_ratio``·1e-2 (Smith & Topin, 2019).
    * ``constant``: 1.

    Linear warm-up from 0 over ``warmup_steps`` applies to ``step``, ``cosine`` and ``constant``.
    """
    check_choice("schedule", schedule, SCHEDULES)
    check_int("total_steps", total_steps, minimum=1)
    check_int("steps_per_epoch", steps_per_epoch, minimum=1)
    check_int("warmup_steps", warmup_steps, minimum=0)
    for m in milestones:
        check_float("milestones", m, low=0)
    check_float("gamma", gamma, low=0, low_open=True)
    check_float("min_lr_ratio", min_lr_ratio, low=0, high=1)
    milestone_steps = sorted(round(m * steps_per_epoch) for m in milestones)

    if schedule == "onecycle":
        up = warmup_steps or max(1, int(0.3 * total_steps))
        floor = min_lr_ratio * 1e-2

        def onecycle(t: int) -> float:
            if t < up:
                return min_lr_ratio + (1 - min_lr_ratio) * (t + 1) / up
            progress = min(1.0, (t - up) / max(1, total_steps - up))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        return onecycle

    def warmed(t: int) -> float:
        if t < warmup_steps:
            return (t + 1) / warmup_steps
        if schedule == "step":
            return gamma ** sum(t >= m for m in milestone_steps)
        if schedule == "cosine":
            progress = min(1.0, (t - warmup_steps) / max(1, total_steps - warmup_steps))
            return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        return 1.0

    return warmed


def build_scheduler(optimizer: torch.optim.Optimizer, **kwargs) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step ``LambdaLR`` over :func:`lr_multiplier` (``kwargs`` as there)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(**kwargs))
