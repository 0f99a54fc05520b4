"""HAM's shared spatial conv (Eq. 8) on the native path: the 2-D C kernel of ``ham_kernels.c``
(``ham_spatial_conv`` and its backward) as an autograd function, for float32 descriptors."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from plugattn.attention import ham_fast

__all__ = ["spatial_conv"]


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
