"""HAM's channel map on the native path as one C call forward and one backward (``ham_channel`` in
``ham_kernels.c``).

Steps (2)-(3) of :class:`~plugattn.attention.ham.HAM` from the pooled ``f_avg``, ``f_max`` ``(B, C)``:
``f_add = ½(f_avg + f_max) + α·f_avg + β·f_max`` (without ``α``, ``β`` for ``adaptive=False``), the 1→1
channel conv across the channels (``k`` taps, zero padding ``k // 2``, no bias) and the sigmoid, summed in
the module's order. As torch operations these were about a dozen small calls and as many backward nodes
on ``(B, C)`` tensors: 0.25-0.31 ms forward + backward at batch 256 and 16-64 channels, about a tenth of
HAM's time at ResNet-20's 7×7 stage (AMD Zen 4, 2026-12-07). The backward recomputes ``f_add`` and sums
the parameters' gradients over the batch in double. :class:`~plugattn.attention.ham.HAMChannel` takes
this path only for its own sigmoid without hooks (``HAMChannel._fuses``); the tests hold it to the torch
formulation.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from plugattn.attention import ham_fast

__all__ = ["channel_map"]


class _ChannelMap(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: FunctionCtx,
        f_avg: Tensor,
        f_max: Tensor,
        weight: Tensor,
        alpha: Tensor | None,
        beta: Tensor | None,
    ) -> Tensor:
        b, c = f_avg.shape
        f_avg, f_max, w = f_avg.contiguous(), f_max.contiguous(), weight.detach().reshape(-1).contiguous()
        adaptive = alpha is not None
        scalars = (float(alpha), float(beta)) if adaptive else (0.0, 0.0)
        a = torch.empty(b, c)
        ham_fast._library().ham_channel(
            *(f_avg.data_ptr(), f_max.data_ptr()), b, c, w.data_ptr(), w.numel(), *scalars, adaptive,
            a.data_ptr(),
        )  # fmt: skip
        ctx.save_for_backward(f_avg, f_max, w, a)
        ctx.scalars, ctx.adaptive, ctx.weight_shape = scalars, adaptive, weight.shape
        return a

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, g: Tensor) -> tuple[Tensor | None, ...]:
        f_avg, f_max, w, a = ctx.saved_tensors
        b, c = a.shape
        g = g.contiguous()
        g_avg, g_max = torch.empty_like(f_avg), torch.empty_like(f_max)
        g_w, g_ab = torch.empty_like(w), torch.empty(2)
        ham_fast._library().ham_channel_backward(
            *(g.data_ptr(), f_avg.data_ptr(), f_max.data_ptr(), a.data_ptr()), b, c, w.data_ptr(), w.numel(),
            *ctx.scalars, ctx.adaptive, g_avg.data_ptr(), g_max.data_ptr(), g_w.data_ptr(), g_ab.data_ptr(),
        )  # fmt: skip
        g_alpha, g_beta = (g_ab[0:1], g_ab[1:2]) if ctx.adaptive else (None, None)
        return g_avg, g_max, g_w.reshape(ctx.weight_shape), g_alpha, g_beta


def channel_map(
    f_avg: Tensor, f_max: Tensor, weight: Tensor, alpha: Tensor | None, beta: Tensor | None
) -> Tensor:
    """``a_c = σ(conv1d(½(f_avg + f_max) + α·f_avg + β·f_max))`` ``(B, C)`` for float32 CPU ``f_avg``,
    ``f_max`` ``(B, C)``, the channel conv's ``weight`` ``(1, 1, k)`` and the mix's ``alpha``, ``beta``
    ``(1,)`` (both ``None`` without the adaptive mix). Differentiable (once) in all of them."""
    return _ChannelMap.apply(f_avg, f_max, weight, alpha, beta)
