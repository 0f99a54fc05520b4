"""PCSA's channel self-attention as one C kernel (``pcsa_kernels.c``) on SCSA's native CPU path.

SCSA's steps (8)-(9) before the gate, per sample and head, channels as the tokens over the ``N`` pooled
positions: ``o = softmax(q kᵀ · s) · v̄`` with ``q, k`` ``(D, N)``, ``v̄ = mean_N v`` ``(D,)`` and
``s = D^-½``. Written as torch operations this stores the ``D × D`` logits and their softmax, and
runs batched matrix products with an inner dimension of ``N`` (4 at 14×14 with a 7×7 window, 1 at 7×7)
at a few GFLOP/s; the kernel computes each row's logits, its softmax and the weighted sum in one pass,
stores only ``o`` and each row's log-sum-exp, and recomputes the row in the backward (as
flash attention does). It is used by :meth:`~plugattn.attention.scsa.SCSA._forward_native` where the
attention has no active dropout; the tests hold it to the torch formulation, forward and backward.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from plugattn import _native

__all__ = ["available", "channel_attention", "status"]

SOURCE = Path(__file__).with_name("pcsa_kernels.c")
_I, _P, _F, _T = ctypes.c_int64, ctypes.c_void_p, ctypes.c_float, ctypes.c_int
_SIGNATURES = {
    "pcsa_attention": ((_P, _P, _P, _I, _I, _I, _F, _P, _P, _T), None),
    "pcsa_attention_backward": ((_P, _P, _P, _P, _P, _P, _I, _I, _I, _F, _P, _P, _P, _T), None),
}


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
