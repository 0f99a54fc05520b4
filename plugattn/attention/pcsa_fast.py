"""PCSA's channel self-attention as one C kernel (``pcsa_kernels.c``) on SCSA's native CPU path.

SCSA's steps (8)-(9) before the gate, per sample and head, channels as the tokens over the ``N`` pooled
positions: ``o = softmax(q kᵀ · s) · v̄`` with ``q, k`` ``(D, N)``, ``v̄ = mean_N v`` ``(D,)`` and
``s = D^-½``. Written as torch operations this stores the ``D × D`` logits and their softmax, and
runs batched matrix products with an inner dimension of ``N`` (4 at 14×14 with a 7×7 window, 1 at 7×7)
at a few GFLOP/s; the kernel computes each row's logits, its softmax and the weighted sum in one pass,
stores only ``o`` and each row's log-sum-exp, and recomputes the row in the backward (as
flash attention does). It is used by :meth:`~plugattn.attention.scsa.SCSA._forward_native` where the
attention has no active dropout and it pays (:func:`pays`); the tests hold it to the torch formulation,
forward and backward.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from plugattn import _native

__all__ = ["MAX_POSITIONS", "MAX_POSITIONS_WIDE", "WIDE", "available", "channel_attention", "pays", "status"]

SOURCE = Path(__file__).with_name("pcsa_kernels.c")
_I, _P, _F, _T = ctypes.c_int64, ctypes.c_void_p, ctypes.c_float, ctypes.c_int
_SIGNATURES = {
    "pcsa_attention": ((_P, _P, _P, _I, _I, _I, _F, _P, _P, _T), None),
    "pcsa_attention_backward": ((_P, _P, _P, _P, _P, _P, _I, _I, _I, _F, _P, _P, _P, _T), None),
}


# The kernel makes N passes over each row of D tokens where a matrix product blocks over N. Forward +
# backward against torch's batched products and softmax (side by side, 2 threads, Intel AVX-512 with
# 512-bit vectors, 2026-12-03; D = 16, 64, 256, 1024): 2.3-4.4x faster at N = 1, 1.2-3.5x at N = 4,
# 1.0-2.0x at N = 8; at N = 16 0.78x and 0.85x for D = 16 and 64, 1.15x and 1.27x for D = 256 and 1024.
# (With 256-bit vectors N = 8 was 0.86-1.15x.) The default 7x7 window pools 14x14 maps to 4 positions,
# 7x7 maps to 1, 28x28 to 16.
MAX_POSITIONS = 8
MAX_POSITIONS_WIDE = 16  # for rows of at least WIDE tokens
WIDE = 256


def pays(positions: int, tokens: int) -> bool:
    """Whether the kernel is the faster way for rows of ``tokens`` channels ``D`` over ``positions``
    pooled positions ``N``: ``N ≤ MAX_POSITIONS``, or ``N ≤ MAX_POSITIONS_WIDE`` with ``D ≥ WIDE``."""
    return positions <= MAX_POSITIONS or (positions <= MAX_POSITIONS_WIDE and tokens >= WIDE)


def _library() -> ctypes.CDLL:
    lib = _native.load(SOURCE, _SIGNATURES)
    if lib is None:
        raise RuntimeError(f"PCSA's attention kernel is not available: {_native.status(SOURCE.stem)}")
    return lib


def available() -> bool:
    """Whether the kernel is built and loaded in this process (building it on first call)."""
    return _native.load(SOURCE, _SIGNATURES) is not None


def status() -> str:
    """``"native (…)"`` or why not (``plugattn._native.status``)."""
    available()
    return _native.status(SOURCE.stem)


class _ChannelAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, q: Tensor, k: Tensor, v: Tensor, scale: float) -> Tensor:
        rows, d, n = q.shape
        q, kt, v = q.contiguous(), k.transpose(1, 2).contiguous(), v.contiguous()  # kt (R, N, D)
        o, lse = q.new_empty(rows, d), q.new_empty(rows, d)
        _library().pcsa_attention(
            *(q.data_ptr(), kt.data_ptr(), v.data_ptr()), rows, d, n, scale,
            o.data_ptr(), lse.data_ptr(), torch.get_num_threads(),
        )  # fmt: skip
        ctx.save_for_backward(q, kt, v, o, lse)
        ctx.scale = scale
        return o

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, g: Tensor) -> tuple[Tensor | None, ...]:
        q, kt, v, o, lse = ctx.saved_tensors
        rows, d, n = q.shape
        g = g.contiguous()
        gq, gkt, gv = torch.empty_like(q), torch.empty_like(kt), torch.empty_like(v)
        _library().pcsa_attention_backward(
            *(g.data_ptr(), q.data_ptr(), kt.data_ptr(), v.data_ptr(), o.data_ptr(), lse.data_ptr()),
            rows, d, n, ctx.scale, gq.data_ptr(), gkt.data_ptr(), gv.data_ptr(), torch.get_num_threads(),
        )  # fmt: skip
        return gq, gkt.transpose(1, 2), gv, None


def channel_attention(q: Tensor, k: Tensor, v: Tensor, scale: float) -> Tensor:
    """``softmax(q kᵀ · scale) · v`` per row: ``q``, ``k`` ``(R, D, N)`` float32 CPU, ``v`` ``(R, D)``;
    returns ``(R, D)``. Differentiable in ``q``, ``k`` and ``v`` (once)."""
    return _ChannelAttention.apply(q, k, v, float(scale))
