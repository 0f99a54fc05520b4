"""SCSA's native CPU path: its passes over the feature map as fused C kernels (``scsa_kernels.c``).

For a float32 contiguous CPU image map with average-pooling PCSA, :class:`~plugattn.attention.scsa.SCSA`
runs SMSA's row and column means (Eq. 1), PCSA's window pooling of ``x_s = x · a_h ⊗ a_w`` (Eq. 5) and
the output ``x_s · a_c`` (Eq. 10) as one C loop each, and never stores ``x_s``; the backward is three
passes: the output's reductions into the three gates, the pooling's into ``a_h`` and ``a_w``, and the
whole input gradient in one pass. The small parts between them (SMSA's depthwise convs, GroupNorms
and gates, PCSA's attention across channels) stay the module's own torch layers, with autograd and
hooks as usual.

The input gradient is gathered as in :mod:`~plugattn.attention.ham_fast`: the means' Function returns a
token that the pooling and the output take; their backward passes leave ``∂L/∂x`` to it, storing what
it needs on the call's :class:`_Tape`. Everything else (other dtypes, layouts and dimensions, max
pooling, CUDA, ``torch.compile``, tracing, ``torch.func``, no C compiler) takes the pure-torch path,
which computes the same function; the tests hold the two to each other.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from plugattn import _native
from plugattn.attention import ham_fast

__all__ = ["available", "means", "output", "status", "usable", "window_pool"]

SOURCE = Path(__file__).with_name("scsa_kernels.c")
_I, _P, _T = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
_SIGNATURES = {
    "scsa_means": ((_P, _I, _I, _I, _P, _P, _T), None),
    "scsa_window_pool": ((_P, _P, _P, _I, _I, _I, _I, _I, _P, _T), None),
    "scsa_output": ((_P, _P, _P, _P, _I, _I, _I, _P, _T), None),
    "scsa_output_backward": ((_P, _P, _P, _P, _P, _I, _I, _I, _P, _P, _P, _T), None),
    "scsa_window_pool_backward": ((_P, _P, _P, _P, _I, _I, _I, _I, _I, _P, _P, _T), None),
    "scsa_input_backward": ((_P, _P, _P, _P, _P, _P, _P, _I, _I, _I, _I, _I, _P, _T), None),
}


def _library() -> ctypes.CDLL:
    lib = _native.load(SOURCE, _SIGNATURES)
    if lib is None:
        raise RuntimeError(f"SCSA's kernels are not available: {_native.status(SOURCE.stem)}")
    return lib


def available() -> bool:
    """Whether the kernels are built and loaded in this process (building them on first call)."""
    try:
        _library()
    except RuntimeError:
        return False
    return True


def status() -> str:
    """``"native (…)"`` or why not (``plugattn._native.status``)."""
    available()
    return _native.status(SOURCE.stem)


def usable(x: Tensor, *others: Tensor) -> bool:
    """Whether a call on ``x`` takes the native path: an image map ``(B, C, H, W)`` in the contiguous
    layout meeting :func:`plugattn.attention.ham_fast.usable`'s conditions, and these kernels built."""
    return x.dim() == 4 and x.is_contiguous() and ham_fast.usable(x, *others) and available()


def _dims(x: Tensor) -> tuple[int, int, int]:
    return x.shape[0] * x.shape[1], x.shape[2], x.shape[3]


def _gates(a_h: Tensor, a_w: Tensor) -> tuple[Tensor, Tensor]:
    """The spatial gates as contiguous ``(B, C, n)`` float32 (the small nets give them in that shape)."""
    return a_h.detach().contiguous(), a_w.detach().contiguous()


def means(x: Tensor) -> tuple[Tensor, Tensor]:
    """Eq. (1): ``x_h = mean_W x`` ``(B, C, H)`` and ``x_w = mean_H x`` ``(B, C, W)``."""
    planes, h, w = _dims(x)
    xh, xw = x.new_empty(*x.shape[:2], h), x.new_empty(*x.shape[:2], w)
    _library().scsa_means(x.data_ptr(), planes, h, w, xh.data_ptr(), xw.data_ptr(), torch.get_num_threads())
    return xh, xw


def window_pool(x: Tensor, a_h: Tensor, a_w: Tensor, window: tuple[int, int]) -> Tensor:
    """Eq. (5): average pooling of ``x · a_h ⊗ a_w`` with kernel = stride = ``window``, floor mode."""
    planes, h, w = _dims(x)
    a_h, a_w = _gates(a_h, a_w)
    out = x.new_empty(*x.shape[:2], h // window[0], w // window[1])
    _library().scsa_window_pool(
        *(x.data_ptr(), a_h.data_ptr(), a_w.data_ptr()), planes, h, w, *window, out.data_ptr(),
        torch.get_num_threads(),
    )  # fmt: skip
    return out


def output(x: Tensor, a_h: Tensor, a_w: Tensor, a_c: Tensor) -> Tensor:
    """Eq. (10): ``x · a_h ⊗ a_w · a_c``."""
    planes, h, w = _dims(x)
    (a_h, a_w), a_c = _gates(a_h, a_w), a_c.detach().contiguous()
    out = torch.empty_like(x)
    _library().scsa_output(
        *(x.data_ptr(), a_h.data_ptr(), a_w.data_ptr(), a_c.data_ptr()), planes, h, w, out.data_ptr(),
        torch.get_num_threads(),
    )  # fmt: skip
    return out


class _Tape:
    """What one call's backward passes hand to the input-gradient pass."""

    def __init__(self, window: tuple[int, int]) -> None:
        self.window = window
        self.gates: tuple[Tensor, Tensor, Tensor] | None = None  # a_h, a_w, a_c as the output used them
        self.grad_out: Tensor | None = None  # ∂L/∂out
        self.grad_pool: Tensor | None = None  # ∂L/∂y, y the pooled x_s


class _Means(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, tape: _Tape) -> tuple[Tensor, Tensor, Tensor]:
        ctx.tape, ctx.shape = tape, x.shape
        return (*means(x), x.new_empty(0))

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, g_h: Tensor, g_w: Tensor, _token: Tensor) -> tuple[Tensor, None]:
        tape = ctx.tape
        b, c, h, w = ctx.shape
        a_h, a_w, a_c = tape.gates
        g_h, g_w = g_h.contiguous(), g_w.contiguous()
        grad_x = g_h.new_empty(ctx.shape)
        grad_out, grad_pool = tape.grad_out, tape.grad_pool
        _library().scsa_input_backward(
            *(ham_fast._ptr(grad_out), a_h.data_ptr(), a_w.data_ptr(), a_c.data_ptr()),
            *(ham_fast._ptr(grad_pool), g_h.data_ptr(), g_w.data_ptr()), b * c, h, w, *tape.window,
            grad_x.data_ptr(), torch.get_num_threads(),
        )  # fmt: skip
        tape.grad_out = tape.grad_pool = None  # freed; a second backward (retain_graph) sets them again
        return grad_x, None


class _WindowPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, a_h: Tensor, a_w: Tensor, _token: Tensor, tape: _Tape) -> Tensor:
        ctx.save_for_backward(x, a_h, a_w)
        ctx.tape = tape
        return window_pool(x, a_h, a_w, tape.window)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, a_h, a_w = ctx.saved_tensors
        planes, h, w = _dims(x)
        (a_h, a_w), grad = _gates(a_h, a_w), grad.contiguous()
        g_h, g_w = torch.empty_like(a_h), torch.empty_like(a_w)
        _library().scsa_window_pool_backward(
            *(x.data_ptr(), a_h.data_ptr(), a_w.data_ptr(), grad.data_ptr()), planes, h, w, *ctx.tape.window,
            g_h.data_ptr(), g_w.data_ptr(), torch.get_num_threads(),
        )  # fmt: skip
        ctx.tape.grad_pool = grad
        return None, g_h, g_w, x.new_zeros(0), None


class _Output(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: FunctionCtx, x: Tensor, a_h: Tensor, a_w: Tensor, a_c: Tensor, _token: Tensor, tape: _Tape
    ) -> Tensor:
        ctx.save_for_backward(x)
        ctx.gate_shape = a_c.shape
        tape.gates = (*_gates(a_h, a_w), a_c.detach().contiguous())
        ctx.tape = tape
        return output(x, *tape.gates)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor | None, ...]:
        (x,) = ctx.saved_tensors
        planes, h, w = _dims(x)
        a_h, a_w, a_c = ctx.tape.gates
        grad = grad.contiguous()
        g_h, g_w, g_c = torch.empty_like(a_h), torch.empty_like(a_w), torch.empty_like(a_c)
        _library().scsa_output_backward(
            *(grad.data_ptr(), x.data_ptr(), a_h.data_ptr(), a_w.data_ptr(), a_c.data_ptr()), planes, h, w,
            g_h.data_ptr(), g_w.data_ptr(), g_c.data_ptr(), torch.get_num_threads(),
        )  # fmt: skip
        ctx.tape.grad_out = grad
        return None, g_h, g_w, g_c.reshape(ctx.gate_shape), x.new_zeros(0), None


def means_with_autograd(x: Tensor, window: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor, _Tape]:
    """SMSA's means on the training path: ``x_h``, ``x_w``, the token and the call's tape."""
    tape = _Tape(window)
    x_h, x_w, token = _Means.apply(x, tape)
    return x_h, x_w, token, tape


def window_pool_with_autograd(x: Tensor, a_h: Tensor, a_w: Tensor, token: Tensor, tape: _Tape) -> Tensor:
    return _WindowPool.apply(x, a_h, a_w, token, tape)


def output_with_autograd(
    x: Tensor, a_h: Tensor, a_w: Tensor, a_c: Tensor, token: Tensor, tape: _Tape
) -> Tensor:
    return _Output.apply(x, a_h, a_w, a_c, token, tape)
