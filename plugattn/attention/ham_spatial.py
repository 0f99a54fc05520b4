"""HAM's spatial step on the native path, for float32 descriptors: the shared 2-D conv (Eq. 8,
``ham_spatial_conv`` of ``ham_kernels.c`` and its backward) and the gates (Eq. 9: each group's BatchNorm,
ReLU and sigmoid in one C pass, ``ham_gates``), as autograd functions. The gates replace the module's own
norm and sigmoid layers only where those are exactly ``nn.BatchNorm2d`` and ``nn.Sigmoid`` without hooks
(:meth:`~plugattn.attention.ham.HAMSpatial._fuses_gates`), and update the running statistics as
``nn.BatchNorm2d`` does."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx, once_differentiable

from plugattn.attention import ham_fast

__all__ = ["gates", "spatial_conv"]


class _SpatialConv(torch.autograd.Function):
    """Eq. (8) for 2-D maps: the shared 2→1-channel ``k×k`` conv (zero padding ``k//2``, no bias) of
    both groups' descriptors, ``(B, 2, H, W)`` each, into ``(2, B, H, W)`` (group, sample). oneDNN runs
    this shape at a few GFLOP/s (one output channel leaves nothing to vectorise over); the kernel
    vectorises along the image rows instead."""

    @staticmethod
    def forward(ctx: FunctionCtx, d1: Tensor, d2: Tensor, weight: Tensor) -> Tensor:
        b, _, h, w = d1.shape
        k = weight.shape[-1]
        d1, d2, weight = d1.contiguous(), d2.contiguous(), weight.contiguous()
        s = d1.new_empty(2, b, h, w)
        threads = torch.get_num_threads()
        scratch = d1.new_empty(threads * ham_fast._library().ham_spatial_conv_scratch(h, w, k))
        ham_fast._library().ham_spatial_conv(
            *(d1.data_ptr(), d2.data_ptr(), weight.data_ptr()), b, h, w, k,
            *(s.data_ptr(), scratch.data_ptr()), threads,
        )  # fmt: skip
        ctx.save_for_backward(d1, d2, weight)
        return s

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, gs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        d1, d2, weight = ctx.saved_tensors
        b, _, h, w = d1.shape
        k = weight.shape[-1]
        gs = gs.contiguous()
        gd1, gd2, gweight = torch.empty_like(d1), torch.empty_like(d2), torch.empty_like(weight)
        threads = torch.get_num_threads()
        scratch = d1.new_empty(threads * ham_fast._native_lib().ham_spatial_conv_scratch(h, w, k))
        ham_fast._native_lib().ham_spatial_conv_backward(
            *(d1.data_ptr(), d2.data_ptr(), weight.data_ptr(), gs.data_ptr()), b, h, w, k,
            *(gd1.data_ptr(), gd2.data_ptr(), gweight.data_ptr(), scratch.data_ptr()), threads,
        )  # fmt: skip
        return gd1, gd2, gweight


def spatial_conv(d1: Tensor, d2: Tensor, weight: Tensor) -> Tensor:
    """The shared spatial conv of both groups (:class:`_SpatialConv`), ``(2, B, H, W)``."""
    return _SpatialConv.apply(d1, d2, weight)


class _Gates(torch.autograd.Function):
    """Eq. (9) for both groups: ``(2, B, H, W)`` conv outputs to the ``(B, 2, H, W)`` maps."""

    @staticmethod
    def forward(
        ctx: FunctionCtx, s: Tensor, affine: Tensor, stats: Tensor, eps: float, batch_stats: bool
    ) -> Tensor:
        two, b, h, w = s.shape
        s = s.contiguous()
        a = s.new_empty(b, two, h, w)
        ham_fast._native_lib().ham_gates(
            s.data_ptr(), b, h * w, affine.data_ptr(), eps, batch_stats, stats.data_ptr(), a.data_ptr(),
            torch.get_num_threads(),
        )  # fmt: skip
        ctx.save_for_backward(s, a, affine, stats)
        ctx.batch_stats = batch_stats
        return a

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor | None, ...]:
        s, a, affine, stats = ctx.saved_tensors
        _, b, h, w = s.shape
        grad = grad.contiguous()
        gs, g_affine = torch.empty_like(s), torch.empty(4)
        ham_fast._native_lib().ham_gates_backward(
            *(s.data_ptr(), a.data_ptr(), grad.data_ptr()), b, h * w, affine.data_ptr(), ctx.batch_stats,
            *(stats.data_ptr(), gs.data_ptr(), g_affine.data_ptr()), torch.get_num_threads(),
        )  # fmt: skip
        return gs, g_affine, None, None, None


def gates(s: Tensor, norms: tuple[nn.BatchNorm2d, nn.BatchNorm2d]) -> Tensor:
    """Both groups' maps ``(B, 2, H, W)`` from the conv's output ``s`` ``(2, B, H, W)``:
    ``σ(ReLU(norm_g(s_g)))`` as ``nn.BatchNorm2d`` computes it in its mode (batch statistics in training
    or without running statistics, the running ones otherwise; both norms in the same mode, more than
    one value per group in training), updating its running statistics and counter as it would."""
    batch_stats = norms[0].training or norms[0].running_mean is None
    ones, zeros = s.new_ones(1), s.new_zeros(1)
    affine = torch.cat([t for n in norms for t in (ones if n.weight is None else n.weight,
                                                   zeros if n.bias is None else n.bias)])  # fmt: skip
    stats = s.new_empty(6)  # mean0, mean1, rstd0, rstd1, var0, var1
    if not batch_stats:
        with torch.no_grad():
            stats[0:2] = torch.cat([n.running_mean for n in norms])
            stats[2:4] = torch.cat([n.running_var for n in norms]).add(norms[0].eps).rsqrt()
    a = _Gates.apply(s, affine, stats, float(norms[0].eps), batch_stats)
    count = s[0].numel()
    with torch.no_grad():
        for g, norm in enumerate(norms):
            if not (norm.training and norm.track_running_stats):
                continue
            norm.num_batches_tracked.add_(1)
            factor = 1.0 / float(norm.num_batches_tracked) if norm.momentum is None else norm.momentum
            norm.running_mean.mul_(1 - factor).add_(stats[g] * factor)
            norm.running_var.mul_(1 - factor).add_(stats[4 + g] * (count / (count - 1) * factor))
    return a
