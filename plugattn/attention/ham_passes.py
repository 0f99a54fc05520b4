"""HAM's passes over the feature map in pure torch, lean in memory: the groups' descriptors (Eq. 7) and
the recombination (Eq. 10) as autograd functions that keep only ``x``, the weights and the maps for the
backward, and without autograd as a few large matrix products in the layout ``x`` comes in.

:class:`~plugattn.attention.ham.HAM` uses them wherever its native path (``ham_fast.py``) does not run;
the module's docstring states the equations.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx

__all__ = [
    "CHANNELS_LAST",
    "GroupDescriptors",
    "Recombine",
    "descriptors_inference",
    "per_channel",
    "recombine_inference",
]

# The channels-last layout of a map with this many axes (signals ``(B, C, L)`` have none).
CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}


def per_channel(w: Tensor, x: Tensor) -> Tensor:
    """Per-channel weights ``w`` ``(B, C)`` as ``(B, C, 1, ...)``, broadcastable against ``x``."""
    return w[(..., *([None] * (x.dim() - 2)))]


class GroupDescriptors(torch.autograd.Function):
    """HAM's two spatial descriptors from ``x`` and the groups' per-channel weights (Eq. 7).

    ``d_i = [Σ_c x·w_i / n_i ; max_c x·w_i]`` for ``w_1 = a_c·m1``, ``w_2 = a_c·(1 - m1)``. The backward is
    written out: the mean's gradient is an outer product, the max's a scatter at the arg-max, and the
    weights' gradients are batched matrix products, so ``F1``/``F2`` are neither kept nor re-read.
    """

    @staticmethod
    def forward(
        ctx: FunctionCtx, x: Tensor, w1: Tensor, w2: Tensor, n1: int, n2: int
    ) -> tuple[Tensor, Tensor]:
        outs, idxs = [], []
        for wi, ni in ((w1, n1), (w2, n2)):
            f = x * per_channel(wi, x)  # (B, C, *S), freed after this iteration
            mx, idx = f.max(dim=1, keepdim=True)  # (B, 1, *S)
            outs.append(torch.cat((f.sum(dim=1, keepdim=True) / ni, mx), dim=1))  # (B, 2, *S)
            idxs.append(idx)
        ctx.save_for_backward(x, w1, w2, *idxs)
        ctx.n = (n1, n2)
        return outs[0], outs[1]

    @staticmethod
    def backward(ctx: FunctionCtx, g1: Tensor, g2: Tensor) -> tuple[Tensor | None, ...]:
        x, w1, w2, i1, i2 = ctx.saved_tensors
        b, c = x.shape[:2]
        n = math.prod(x.shape[2:])  # positions: H·W in 2-D
        dtype = torch.promote_types(x.dtype, w1.dtype)
        xf = x.to(dtype).reshape(b, c, n)  # (B, C, N)
        grad_x = x.new_zeros(x.shape, dtype=dtype) if ctx.needs_input_grad[0] else None
        grads_w = []
        for wi, gi, idx, ni in ((w1, g1, i1, ctx.n[0]), (w2, g2, i2, ctx.n[1])):
            wi, gi = wi.to(dtype), gi.to(dtype)
            g_avg = gi[:, 0:1] / ni  # (B, 1, *S): reaches every channel of the group's F
            g_max = gi[:, 1:2]  # (B, 1, *S): reaches the arg-max channel only
            # dL/dw_i[b, c] = Σ_positions x·(g_avg + [c = idx]·g_max)
            gw = torch.bmm(xf, g_avg.reshape(b, n, 1)).squeeze(2)  # (B, C)
            gw = gw.scatter_add(1, idx.reshape(b, -1), (x.to(dtype).gather(1, idx) * g_max).reshape(b, -1))
            grads_w.append(gw)
            if grad_x is not None:
                grad_x.addcmul_(per_channel(wi, x), g_avg)
                w_at_max = wi.gather(1, idx.reshape(b, -1)).reshape_as(g_max)  # w_i at the arg-max
                grad_x.scatter_add_(1, idx, w_at_max * g_max)
        return grad_x, grads_w[0], grads_w[1], None, None


class Recombine(torch.autograd.Function):
    """HAM's output ``F'' = x·(w_1 ⊗ a_s1 + w_2 ⊗ a_s2)`` (Eq. 10 with F_i = x·w_i).

    Keeps only ``x``, the weights and the two maps for the backward (autograd would keep F1 and F2),
    and computes the maps' and weights' gradients as batched matrix products over ``g·x``.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, w1: Tensor, w2: Tensor, a1: Tensor, a2: Tensor) -> Tensor:
        ctx.save_for_backward(x, w1, w2, a1, a2)
        gate = torch.addcmul(per_channel(w1, x) * a1, per_channel(w2, x), a2)  # (B, C, *S)
        return x * gate

    @staticmethod
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, w1, w2, a1, a2 = ctx.saved_tensors
        b, c = x.shape[:2]
        n = math.prod(x.shape[2:])  # positions: H·W in 2-D
        dtype = torch.promote_types(torch.promote_types(x.dtype, w1.dtype), a1.dtype)
        w1, w2, a1, a2, grad = w1.to(dtype), w2.to(dtype), a1.to(dtype), a2.to(dtype), grad.to(dtype)
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = grad * torch.addcmul(per_channel(w1, x) * a1, per_channel(w2, x), a2)
        gx = (grad * x.to(dtype)).reshape(b, c, n)  # (B, C, N)
        maps = torch.cat((a1, a2), dim=1).reshape(b, 2, n)  # (B, 2, N)
        grad_w = torch.bmm(gx, maps.transpose(1, 2))  # (B, C, 2): Σ_positions g·x·a_i
        grad_a = torch.bmm(torch.stack((w1, w2), dim=1), gx).reshape(b, 2, *x.shape[2:])  # Σ_c g·x·w_i
        return grad_x, grad_w[:, :, 0], grad_w[:, :, 1], grad_a[:, 0:1], grad_a[:, 1:2]


def _channels_last(x: torch.Tensor) -> bool:
    """Whether ``x`` is laid out channels_last (``channels_last_3d`` for volumes) and not also plainly
    contiguous, as 1×1 maps are; never for signals ``(B, C, L)``."""
    layout = CHANNELS_LAST.get(x.dim())
    return layout is not None and x.is_contiguous(memory_format=layout) and not x.is_contiguous()


def descriptors_inference(
    x: torch.Tensor, weights: torch.Tensor, sizes: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 7 without autograd: both groups' sums in one matrix product, both maxima in one reduction.

    ``weights`` ``(B, 2, C)`` holds ``w_1, w_2``; returns ``d_1, d_2`` ``(B, 2, *S)`` as
    :class:`GroupDescriptors` does. The ``N`` positions of ``S`` are flattened (``N = H·W`` in 2-D).
    Works in the layout ``x`` comes in (no copy of ``x``).
    """
    batch, c = x.shape[:2]
    n = math.prod(x.shape[2:])
    if _channels_last(x):
        xs = x.movedim(1, -1).reshape(batch, n, c)  # (B, N, C), a view
        sums = torch.bmm(xs, weights.transpose(1, 2)).transpose(1, 2)  # (B, 2, N)
        maxes = (xs.unsqueeze(2) * weights.unsqueeze(1)).amax(dim=3).transpose(1, 2)  # (B, 2, N)
    else:
        xs = x.reshape(batch, c, n)  # (B, C, N)
        sums = torch.bmm(weights, xs)  # (B, 2, N)
        maxes = (xs.unsqueeze(1) * weights.unsqueeze(3)).amax(dim=2)  # (B, 2, N)
    d1 = torch.stack((sums[:, 0] / sizes[0], maxes[:, 0]), dim=1)  # (B, 2, N)
    d2 = torch.stack((sums[:, 1] / sizes[1], maxes[:, 1]), dim=1)
    return d1.reshape(batch, 2, *x.shape[2:]), d2.reshape(batch, 2, *x.shape[2:])  # (B, 2, *S)


def recombine_inference(x: torch.Tensor, weights: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Eq. 10 without autograd: the gate ``w_1 ⊗ a_s1 + w_2 ⊗ a_s2`` as one matrix product, times ``x``
    in place of the gate (one tensor of ``x``'s size written besides the output). ``maps``
    ``(B, 2, *S)`` is flattened to ``(B, 2, N)`` (``(B, N, 2)`` channels-last)."""
    batch, c = x.shape[:2]
    n = math.prod(x.shape[2:])
    if _channels_last(x):
        gate = torch.bmm(maps.movedim(1, -1).reshape(batch, n, 2), weights)  # (B, N, C)
        gate = gate.reshape(batch, *x.shape[2:], c).movedim(-1, 1)  # channels-last (B, C, *S)
    else:
        gate = torch.bmm(weights.transpose(1, 2), maps.reshape(batch, 2, n))  # (B, C, N)
        gate = gate.reshape(x.shape)
    return gate.mul_(x)
