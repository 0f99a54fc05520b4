"""Max-norm weight constraints, as Keras's ``max_norm`` and EEGNet's code use them.

Keras's ``kernel_constraint=max_norm(c)`` (Srivastava et al. 2014, "Dropout: A Simple Way to Prevent
Neural Networks from Overfitting", JMLR 15, §5.1) is a *projection after every optimiser update*: each
output unit's incoming weight vector ``w_j`` (a row of a Linear weight, one filter of a conv) is scaled
back onto the ball ``‖w_j‖₂ ≤ c`` whenever a step takes it outside::

    w_j ← w_j · min(1, c / ‖w_j‖₂)                                        (projection)

A model cannot run code after its optimiser's step, so the layers here project *lazily*, at the start
of the next training forward, which gives the same iterates: the gradient is taken at the projected
weight and the optimiser state (momentum, Adam moments) only ever sees gradients, as in Keras.

* In ``train()`` mode the stored parameter is projected in place (under ``no_grad``) and then used as
  it is, so the gradient is the plain gradient at the projected point (no gradient through the
  projection) and a checkpoint written after the next forward holds constrained weights.
* In ``eval()`` mode nothing is written: the forward computes with the projection of the stored weight,
  so the weight after the very last step (not yet projected) is still used constrained, and the model
  exports (ONNX, ``torch.export``) as a pure function.

So the weight a forward uses always satisfies the constraint; the stored parameter does from the first
training forward after each step on. braindecode's current layers instead re-parametrise the weight
(``weight = renorm(raw)``, the gradient flowing through the renorm, ``raw`` unbounded); its older ones
renormed ``weight.data`` in every forward. The projection here is Keras's (EEGNet's reference code).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from plugattn._checks import check_float

__all__ = ["MaxNormConv2d", "MaxNormLinear", "max_norm_rows", "max_norm_weight"]


def max_norm_rows(weight: torch.Tensor, max_norm: float) -> torch.Tensor:
    """``weight`` with every slice ``weight[j]`` (one output unit) scaled onto ``‖·‖₂ ≤ max_norm``; slices
    inside the ball are returned exactly unchanged (scale 1)."""
    norms = weight.flatten(1).norm(dim=1)  # (out,)
    scale = max_norm / norms.clamp_min(max_norm)  # 1 inside the ball, c / ‖w_j‖ outside
    return weight * scale.view(-1, *([1] * (weight.dim() - 1)))


def max_norm_weight(layer: nn.Module) -> torch.Tensor:
    """The weight ``layer`` computes with (see the module docstring): projected in place in training,
    projected out of place in evaluation."""
    if layer.training:
        with torch.no_grad():
            layer.weight.copy_(max_norm_rows(layer.weight, layer.max_norm))
        return layer.weight
    return max_norm_rows(layer.weight, layer.max_norm)


class MaxNormConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose filters (``weight[j]``, one per output channel) keep ``‖·‖₂ ≤ max_norm``.

    Args:
        *args, **kwargs: ``nn.Conv2d``'s.
        max_norm: the bound ``c`` (> 0), e.g. 1 on EEGNet's depthwise spatial filters.
    """

    def __init__(self, *args: Any, max_norm: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_norm = check_float("max_norm", max_norm, low=0, low_open=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, max_norm_weight(self), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, max_norm={self.max_norm}"


class MaxNormLinear(nn.Linear):
    """``nn.Linear`` whose rows (one per output unit) keep ``‖·‖₂ ≤ max_norm`` (Keras's Dense
    ``kernel_constraint=max_norm(c)``: its kernel is ``(in, out)``, norms over ``in``, the same vectors).

    Args:
        *args, **kwargs: ``nn.Linear``'s.
        max_norm: the bound ``c`` (> 0), e.g. EEGNet's ``norm_rate`` 0.25 on its classifier.
    """

    def __init__(self, *args: Any, max_norm: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_norm = check_float("max_norm", max_norm, low=0, low_open=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, max_norm_weight(self), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, max_norm={self.max_norm}"
