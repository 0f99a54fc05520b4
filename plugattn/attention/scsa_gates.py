"""SCSA's gates on the native training path as one C pass each over the small tensors they come from.

SMSA's gates (steps 2-3 of :class:`~plugattn.attention.scsa.SCSA`) from the two mean sequences:
``a = σ(GN_4(dwconv(x_axis) + bias))`` for ``x_h`` and ``x_w``, the same depthwise kernel on both and a
GroupNorm(4, C) each, in one kernel per sample (``scsa_smsa`` in ``scsa_kernels.c``) and one for the
backward, instead of a torch operation per step: the concatenation, the conv, two GroupNorms and two
sigmoids with their backward took 2.2-4.8 ms a block at batch 256 on the 7-32-long sequences of
ResNet-20 (AMD Zen 4, 2026-12-07), about half of SCSA's time at the 8×8 stage.

The norms' statistics are the biased variance over each group's ``C/4`` channels × the positions, as
``nn.GroupNorm``'s; the kernel keeps each group's mean and 1/std for the backward and recomputes the conv
there. Parameter gradients are summed over the batch in double. The sequences come as the means' kernel
gives them, ``(B, n, C)`` under a channels-last map (``(B, C, n)`` views of it), and the gates go out in
that layout, which is the one the passes over the map read. :class:`~plugattn.attention.scsa.SCSA`
takes this path only for its own layers without hooks (``SCSA._fuses_smsa``); the tests hold it to
``F.conv1d``, ``nn.GroupNorm`` and ``torch.sigmoid``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from plugattn.attention import scsa_fast

__all__ = ["pcsa_gate", "smsa_gates"]


def _rows_first(seq: Tensor) -> bool:
    """Whether ``seq`` ``(B, C, n)`` is a view of a contiguous ``(B, n, C)`` (the channels-last means)."""
    return seq.transpose(1, 2).is_contiguous()


def _as_kernel_takes(seq: Tensor, cl: bool) -> Tensor:
    """``seq`` ``(B, C, n)`` as float32 memory in the kernel's layout: ``(B, n, C)`` if ``cl``."""
    seq = seq.detach().float()
    return seq.transpose(1, 2).contiguous() if cl else seq.contiguous()


def _as_module_gives(seq: Tensor, cl: bool) -> Tensor:
    """The kernel's array back as ``(B, C, n)`` (a view)."""
    return seq.transpose(1, 2) if cl else seq


class _SMSAGates(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: FunctionCtx,
        x_h: Tensor,
        x_w: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        eps: tuple[float, float],
        *norm_params: Tensor,
    ) -> tuple[Tensor, Tensor]:
        b, c, h = x_h.shape
        w, k = x_w.shape[2], weight.shape[-1]
        cl = _rows_first(x_h) and _rows_first(x_w)
        seqs = [_as_kernel_takes(s, cl) for s in (x_h, x_w)]
        wt = weight.detach().reshape(c, k).t().contiguous()  # (k, C)
        bias_v = torch.zeros(c) if bias is None else bias.detach().contiguous()
        gn = torch.cat([p.detach().reshape(c) for p in norm_params])  # GN_h's weight and bias, GN_w's
        eps_t = torch.tensor(eps, dtype=torch.float32)
        gates = [torch.empty_like(s) for s in seqs]
        stats = torch.empty(b, 2, 8)
        lib, threads = scsa_fast._library(), torch.get_num_threads()
        scratch = torch.empty(threads * lib.scsa_smsa_scratch(c, h, w, k))
        lib.scsa_smsa(
            *(seqs[0].data_ptr(), seqs[1].data_ptr()), b, c, h, w, cl, wt.data_ptr(), bias_v.data_ptr(), k,
            *(gn.data_ptr(), eps_t.data_ptr(), gates[0].data_ptr(), gates[1].data_ptr(), stats.data_ptr()),
            scratch.data_ptr(), threads,
        )  # fmt: skip
        ctx.save_for_backward(*seqs, *gates, stats, wt, bias_v, gn)
        ctx.cl, ctx.has_bias, ctx.weight_shape = cl, bias is not None, weight.shape
        return _as_module_gives(gates[0], cl), _as_module_gives(gates[1], cl)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, g_h: Tensor, g_w: Tensor) -> tuple[Tensor | None, ...]:
        s_h, s_w, a_h, a_w, stats, wt, bias_v, gn = ctx.saved_tensors
        cl = ctx.cl
        b, c = stats.shape[0], wt.shape[1]
        axis = 1 if cl else 2  # the positions' axis
        h, w, k = s_h.shape[axis], s_w.shape[axis], wt.shape[0]
        grads = [_as_kernel_takes(g, cl) for g in (g_h, g_w)]
        gx_h, gx_w = torch.empty_like(s_h), torch.empty_like(s_w)
        gwt, gbias, ggn = torch.empty(k, c), torch.empty(c), torch.empty(4, c)
        lib, threads = scsa_fast._library(), torch.get_num_threads()
        scratch = torch.empty(threads * lib.scsa_smsa_scratch(c, h, w, k))
        lib.scsa_smsa_backward(
            *(grads[0].data_ptr(), grads[1].data_ptr(), s_h.data_ptr(), s_w.data_ptr()),
            *(a_h.data_ptr(), a_w.data_ptr(), stats.data_ptr()), b, c, h, w, cl, wt.data_ptr(),
            *(bias_v.data_ptr(), k, gn.data_ptr(), gx_h.data_ptr(), gx_w.data_ptr(), gwt.data_ptr()),
            *(gbias.data_ptr(), ggn.data_ptr(), scratch.data_ptr()), threads,
        )  # fmt: skip
        g_weight = gwt.t().reshape(ctx.weight_shape)
        g_bias = gbias if ctx.has_bias else None
        g_h, g_w = _as_module_gives(gx_h, cl), _as_module_gives(gx_w, cl)
        return g_h, g_w, g_weight, g_bias, None, *ggn.unbind(0)


def smsa_gates(
    x_h: Tensor,
    x_w: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    norms: tuple[torch.nn.GroupNorm, torch.nn.GroupNorm],
) -> tuple[Tensor, Tensor]:
    """``a_h, a_w = σ(GN_h(dwconv(x_h))), σ(GN_w(dwconv(x_w)))`` ``(B, C, n)`` each, for float32 CPU
    sequences ``x_h`` ``(B, C, H)`` and ``x_w`` ``(B, C, W)``, the depthwise kernel ``weight``
    ``(C, 1, k)`` of odd ``k`` with zero padding ``(k - 1) // 2`` and ``bias`` ``(C,)`` or ``None``, and
    ``norms`` two affine ``GroupNorm(4, C)``. Differentiable (once) in the sequences, the kernel, the bias
    and the norms' parameters."""
    params = [t for n in norms for t in (n.weight, n.bias)]
    return _SMSAGates.apply(x_h, x_w, weight, bias, (float(norms[0].eps), float(norms[1].eps)), *params)


class _PCSAGate(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: FunctionCtx, y: Tensor, eps: float, heads: int, scale: float, *params: Tensor | None
    ) -> Tensor:
        b, c = y.shape[:2]
        n = y[0, 0].numel()
        cl = not y.is_contiguous() and y.is_contiguous(memory_format=torch.channels_last)
        y = y.detach().contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
        par = torch.cat([torch.zeros(c) if p is None else p.detach().reshape(c) for p in params])
        ac, keep = torch.empty(b, c), torch.empty(b, 2 + 2 * c)
        lib, threads = scsa_fast._library(), torch.get_num_threads()
        scratch = torch.empty(threads * lib.scsa_pcsa_scratch(c, n))
        lib.scsa_pcsa(
            y.data_ptr(), b, c, n, cl, par.data_ptr(), eps, heads, scale, ac.data_ptr(), keep.data_ptr(),
            scratch.data_ptr(), threads,
        )  # fmt: skip
        ctx.save_for_backward(y, ac, keep, par)
        ctx.cl, ctx.heads, ctx.scale = cl, heads, scale
        ctx.param_shapes = [None if p is None else p.shape for p in params]
        return ac.reshape(b, c, *[1] * (y.dim() - 2))

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, g: Tensor) -> tuple[Tensor | None, ...]:
        y, ac, keep, par = ctx.saved_tensors
        b, c = ac.shape
        g = g.reshape(b, c).contiguous()
        gy, gpar = torch.empty_like(y), torch.empty(8, c)
        lib, threads = scsa_fast._library(), torch.get_num_threads()
        scratch = torch.empty(threads * lib.scsa_pcsa_scratch(c, y[0, 0].numel()))
        lib.scsa_pcsa_backward(
            *(g.data_ptr(), y.data_ptr(), ac.data_ptr(), keep.data_ptr()), b, c, y[0, 0].numel(), ctx.cl,
            par.data_ptr(), ctx.heads, ctx.scale, gy.data_ptr(), gpar.data_ptr(), scratch.data_ptr(), threads,
        )  # fmt: skip
        grads = [None if s is None else gp.reshape(s) for gp, s in zip(gpar, ctx.param_shapes, strict=True)]
        return gy, None, None, None, *grads


def pcsa_gate(
    y: Tensor, norm: torch.nn.GroupNorm, convs: tuple[torch.nn.Module, ...], heads: int, scale: float
) -> Tensor:
    """PCSA's channel gate ``a_c`` ``(B, C, 1, 1)`` from the pooled float32 CPU map ``y``
    ``(B, C, h', w')``, contiguous or channels-last: ``t = GN_1(y)`` (``norm``, affine, one group),
    ``q, k, v`` the depthwise 1×1 ``convs`` of ``t`` (per-channel scales and biases), then per head
    ``o = softmax(q kᵀ · scale) · mean_N(v)`` over its ``C / heads`` channels as tokens, and
    ``a_c = σ(o)``. Differentiable (once) in ``y`` and the parameters."""
    params = [norm.weight, norm.bias]
    for conv in convs:
        params += [conv.weight, conv.bias]
    return _PCSAGate.apply(y, float(norm.eps), heads, float(scale), *params)
