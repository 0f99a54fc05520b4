"""SCSA's native CPU path: its passes over the feature map as fused C kernels (``scsa_kernels.c``).

For a float32 CPU image map, contiguous or channels-last, with average-pooling PCSA,
:class:`~plugattn.attention.scsa.SCSA` runs SMSA's row and column means (Eq. 1), PCSA's window pooling
of ``x_s = x · a_h ⊗ a_w`` (Eq. 5) and the output ``x_s · a_c`` (Eq. 10) as one C loop each, and never
stores ``x_s``; the backward is three passes: the output's reductions into the three gates, the
pooling's into ``a_h`` and ``a_w``, and the whole input gradient in one pass. Between them, SMSA's gates
(from the means) and PCSA's gate (from the pooled map) run as one C pass each, forward and backward
(:mod:`~plugattn.attention.scsa_gates`), where their parts are the module's own layers without hooks. With
a hook on a norm or a gate, those parts run as the module's torch layers, with autograd and hooks as
usual, SMSA's four depthwise convs as one C loop (:func:`depthwise_conv1d`) and PCSA's q, k, v (depthwise
1×1 convs) as per-channel multiplies by their weights: forward hooks on those five convs fire on the
pure-torch path only. Under CPU autocast the module takes this path computing
in float32, as HAM does: a bf16 map is read and written as it is by the ``_bf16`` kernels
(``scsa_map.h``; bit for bit the float32 kernels on the map cast up, without the casts' passes), the
gates, pooled map and sums staying float32; an fp16 map is cast up and the output back.

The channels-last kernels run over the channels in their inner loops; they take the gates transposed,
``(B, n, C)``, and give the pooled map in channels-last.

The input gradient is gathered as in :mod:`~plugattn.attention.ham_fast`: the means' Function returns a
token that the pooling and the output take; their backward passes leave ``∂L/∂x`` to it, storing what
it needs on the call's :class:`_Tape`. Everything else (other dtypes and dimensions, max pooling, CUDA,
``torch.compile``, tracing, ``torch.func``, no C compiler) takes the pure-torch path, which computes the
same function; the tests hold the two to each other.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from plugattn import _native
from plugattn.attention import ham_fast

__all__ = [
    "available",
    "depthwise_conv1d",
    "evaluate",
    "pack",
    "means",
    "reads_bf16",
    "output",
    "status",
    "usable",
    "usable_in_float32",
    "window_pool",
]

SOURCE = Path(__file__).with_name("scsa_kernels.c")
_I, _P, _F, _T = ctypes.c_int64, ctypes.c_void_p, ctypes.c_float, ctypes.c_int
_MAP_PASSES = {
    "scsa_means": ((_P, _I, _I, _I, _P, _P, _T), None),
    "scsa_window_pool": ((_P, _P, _P, _I, _I, _I, _I, _I, _P, _T), None),
    "scsa_output": ((_P, _P, _P, _P, _I, _I, _I, _P, _T), None),
    "scsa_output_backward": ((_P, _P, _P, _P, _P, _I, _I, _I, _P, _P, _P, _T), None),
    "scsa_window_pool_backward": ((_P, _P, _P, _P, _I, _I, _I, _I, _I, _P, _P, _T), None),
    "scsa_input_backward": ((_P, _P, _P, _P, _P, _P, _P, _I, _I, _I, _I, _I, _P, _T), None),
    # channels-last: the batch and the channels instead of the B·C planes (one size more each)
    "scsa_means_cl": ((_P, _I, _I, _I, _I, _P, _P, _T), None),
    "scsa_window_pool_cl": ((_P, _P, _P, _I, _I, _I, _I, _I, _I, _P, _T), None),
    "scsa_output_cl": ((_P, _P, _P, _P, _I, _I, _I, _I, _P, _T), None),
    "scsa_output_backward_cl": ((_P, _P, _P, _P, _P, _I, _I, _I, _I, _P, _P, _P, _T), None),
    "scsa_window_pool_backward_cl": ((_P, _P, _P, _P, _I, _I, _I, _I, _I, _I, _P, _P, _T), None),
    "scsa_input_backward_cl": ((_P, _P, _P, _P, _P, _P, _P, _I, _I, _I, _I, _I, _I, _P, _T), None),
    "scsa_eval": ((_P, _I, _I, _I, _I, _T, _P, _I, _P, _I, _I, _I, _F, _P, _P, _P, _T), None),
}
# The passes over the map exist for float32 maps and, with the same arguments, for bfloat16 maps (the
# names ending in _bf16, scsa_map.h); the others take float32 only.
_SIGNATURES = {
    **_MAP_PASSES,
    **{name + "_bf16": signature for name, signature in _MAP_PASSES.items()},
    "scsa_dwconv": ((_P, _P, _P, _I, _I, _I, _I, _P, _T), None),
    "scsa_dwconv_backward": ((_P, _P, _P, _I, _I, _I, _I, _P, _P, _P, _T), None),
    "scsa_eval_scratch": ((_I, _I, _I, _I, _I), _I),
    "scsa_eval_pack": ((_P, _P, _I, _I, _P), None),
    "scsa_smsa": ((_P, _P, _I, _I, _I, _I, _T, _P, _P, _I, _P, _P, _P, _P, _P, _P, _T), None),
    "scsa_smsa_backward": (
        (_P, _P, _P, _P, _P, _P, _P, _I, _I, _I, _I, _T, _P, _P, _I, _P, _P, _P, _P, _P, _P, _P, _T),
        None,
    ),
    "scsa_smsa_scratch": ((_I, _I, _I, _I), _I),
    "scsa_pcsa": ((_P, _I, _I, _I, _T, _P, _F, _I, _F, _P, _P, _P, _T), None),
    "scsa_pcsa_backward": ((_P, _P, _P, _P, _I, _I, _I, _T, _P, _I, _F, _P, _P, _P, _T), None),
    "scsa_pcsa_scratch": ((_I, _I), _I),
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
    """Whether a call on ``x`` takes the native path: an image map ``(B, C, H, W)``, contiguous or
    channels-last, meeting :func:`plugattn.attention.ham_fast.usable`'s conditions, and these kernels
    built."""
    return x.dim() == 4 and ham_fast.usable(x, *others) and available()


def usable_in_float32(x: Tensor, *others: Tensor) -> bool:
    """Whether a call on ``x`` under CPU autocast takes the native path computing in float32 (a bf16 map
    read and written as it is, an fp16 map cast up), as :func:`plugattn.attention.ham_fast.usable_in_float32`
    says for HAM."""
    return x.dim() == 4 and ham_fast.usable_in_float32(x, *others) and available()


def reads_bf16(x: Tensor) -> bool:
    """Whether a bf16 map ``x`` under autocast is read and written as it is (the ``_bf16`` kernels) rather
    than cast up and back: channels-last maps, and contiguous ones at least 16 columns wide. The
    contiguous kernels run row by row, and on rows shorter than a vector's lanes the conversions cost
    more than the casts save: SCSA(64) at 256×64×7×7 contiguous ran at 0.84× (inference) and 0.94×
    (forward + backward) the speed of the casts around the float32 kernels, 0.86-0.98× at 14×14; at
    28×28 and 56×56 at 1.25-1.86× their speed (AMD Zen 4, AVX-512, 2026-12-07, side by side)."""
    return ham_fast.channels_last(x) or x.shape[-1] >= 16


def _kernel(name: str, x: Tensor) -> ctypes._CFuncPtr:
    """The kernel for the map ``x``'s layout (``name_cl`` for channels-last) and dtype (``…_bf16``)."""
    suffix = ("_cl" if ham_fast.channels_last(x) else "") + ham_fast.dtype_suffix(x.dtype)
    return getattr(_library(), name + suffix)


def _dims(x: Tensor) -> tuple[int, ...]:
    """The sizes the kernels take: the B·C planes, H, W; channels-last: B, C, H, W."""
    b, c, h, w = x.shape
    return (b, c, h, w) if ham_fast.channels_last(x) else (b * c, h, w)


def _empty(x: Tensor, *shape: int) -> Tensor:
    """A new float32 map of ``shape`` in ``x``'s layout (the pooled map: float32 for a bf16 ``x`` too)."""
    return torch.empty(shape, memory_format=ham_fast._layout(x))


def _gate(x: Tensor, a: Tensor) -> Tensor:
    """A spatial gate or the gradient of a mean ``(B, C, n)`` as the kernels take it: float32 contiguous,
    transposed to ``(B, n, C)`` for a channels-last ``x``."""
    a = a.detach()
    return (a.transpose(1, 2) if ham_fast.channels_last(x) else a).contiguous()


def _ungate(x: Tensor, a: Tensor) -> Tensor:
    """The inverse of :func:`_gate`'s transposition: ``(B, C, n)`` (a view)."""
    return a.transpose(1, 2) if ham_fast.channels_last(x) else a


def _sequence(x: Tensor, n: int) -> Tensor:
    """A new ``(B, C, n)`` sequence in the kernels' layout for ``x`` (see :func:`_gate`)."""
    b, c = x.shape[:2]
    return torch.empty(b, n, c) if ham_fast.channels_last(x) else torch.empty(b, c, n)  # float32


def means(x: Tensor) -> tuple[Tensor, Tensor]:
    """Eq. (1): ``x_h = mean_W x`` ``(B, C, H)`` and ``x_w = mean_H x`` ``(B, C, W)``."""
    xh, xw = _sequence(x, x.shape[2]), _sequence(x, x.shape[3])
    _kernel("scsa_means", x)(x.data_ptr(), *_dims(x), xh.data_ptr(), xw.data_ptr(), torch.get_num_threads())
    return _ungate(x, xh), _ungate(x, xw)


def window_pool(x: Tensor, a_h: Tensor, a_w: Tensor, window: tuple[int, int]) -> Tensor:
    """Eq. (5): average pooling of ``x · a_h ⊗ a_w`` with kernel = stride = ``window``, floor mode."""
    a_h, a_w = _gate(x, a_h), _gate(x, a_w)
    out = _empty(x, *x.shape[:2], x.shape[2] // window[0], x.shape[3] // window[1])
    _kernel("scsa_window_pool", x)(
        *(x.data_ptr(), a_h.data_ptr(), a_w.data_ptr()), *_dims(x), *window, out.data_ptr(),
        torch.get_num_threads(),
    )  # fmt: skip
    return out


def _channel_gate(a_c: Tensor) -> Tensor:
    return a_c.detach().reshape(a_c.shape[:2]).contiguous()  # (B, C)


def output(x: Tensor, a_h: Tensor, a_w: Tensor, a_c: Tensor) -> Tensor:
    """Eq. (10): ``x · a_h ⊗ a_w · a_c``."""
    return _output(x, _gate(x, a_h), _gate(x, a_w), _channel_gate(a_c))


def _output(x: Tensor, a_h: Tensor, a_w: Tensor, a_c: Tensor) -> Tensor:
    """Eq. (10) with the gates as the kernels take them."""
    out = torch.empty_like(x)
    _kernel("scsa_output", x)(
        *(x.data_ptr(), a_h.data_ptr(), a_w.data_ptr(), a_c.data_ptr()), *_dims(x), out.data_ptr(),
        torch.get_num_threads(),
    )  # fmt: skip
    return out


def _like(x: Tensor, grad: Tensor, dtype: torch.dtype) -> Tensor:
    """A gradient in ``x``'s layout and ``dtype``, as the kernels read it (a copy only where it differs)."""
    return grad.to(dtype).contiguous(memory_format=ham_fast._layout(x))


class _Tape:
    """What one call's backward passes hand to the input-gradient pass."""

    def __init__(self, window: tuple[int, int]) -> None:
        self.window = window
        self.gates: tuple[Tensor, Tensor, Tensor] | None = None  # a_h, a_w, a_c as the kernels took them
        self.grad_out: Tensor | None = None  # ∂L/∂out
        self.grad_pool: Tensor | None = None  # ∂L/∂y, y the pooled x_s


class _Means(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, tape: _Tape) -> tuple[Tensor, Tensor, Tensor]:
        ctx.tape, ctx.shape, ctx.layout, ctx.dtype = tape, x.shape, ham_fast._layout(x), x.dtype
        return (*means(x), x.new_empty(0))

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, g_h: Tensor, g_w: Tensor, _token: Tensor) -> tuple[Tensor, None]:
        tape = ctx.tape
        grad_x = torch.empty(ctx.shape, dtype=ctx.dtype, memory_format=ctx.layout)
        g_h, g_w = _gate(grad_x, g_h), _gate(grad_x, g_w)
        _kernel("scsa_input_backward", grad_x)(
            *(ham_fast._ptr(tape.grad_out), *(a.data_ptr() for a in tape.gates)),
            *(ham_fast._ptr(tape.grad_pool), g_h.data_ptr(), g_w.data_ptr()), *_dims(grad_x), *tape.window,
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
        a_h, a_w, grad = _gate(x, a_h), _gate(x, a_w), _like(x, grad, torch.float32)  # ∂L/∂y: float32
        g_h, g_w = torch.empty_like(a_h), torch.empty_like(a_w)
        _kernel("scsa_window_pool_backward", x)(
            *(x.data_ptr(), a_h.data_ptr(), a_w.data_ptr(), grad.data_ptr()), *_dims(x), *ctx.tape.window,
            g_h.data_ptr(), g_w.data_ptr(), torch.get_num_threads(),
        )  # fmt: skip
        ctx.tape.grad_pool = grad
        return None, _ungate(x, g_h), _ungate(x, g_w), x.new_zeros(0), None


class _Output(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: FunctionCtx, x: Tensor, a_h: Tensor, a_w: Tensor, a_c: Tensor, _token: Tensor, tape: _Tape
    ) -> Tensor:
        ctx.save_for_backward(x)
        ctx.gate_shape = a_c.shape
        tape.gates = (_gate(x, a_h), _gate(x, a_w), _channel_gate(a_c))
        ctx.tape = tape
        return _output(x, *tape.gates)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor | None, ...]:
        (x,) = ctx.saved_tensors
        a_h, a_w, a_c = ctx.tape.gates
        grad = _like(x, grad, x.dtype)
        g_h, g_w, g_c = torch.empty_like(a_h), torch.empty_like(a_w), torch.empty_like(a_c)
        _kernel("scsa_output_backward", x)(
            *(grad.data_ptr(), x.data_ptr(), a_h.data_ptr(), a_w.data_ptr(), a_c.data_ptr()), *_dims(x),
            g_h.data_ptr(), g_w.data_ptr(), g_c.data_ptr(), torch.get_num_threads(),
        )  # fmt: skip
        ctx.tape.grad_out = grad
        return None, _ungate(x, g_h), _ungate(x, g_w), g_c.reshape(ctx.gate_shape), x.new_zeros(0), None


class _DepthwiseConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, seq: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        seq, weight = seq.contiguous(), weight.contiguous()
        ctx.save_for_backward(seq, weight)
        ctx.has_bias = bias is not None
        out = torch.empty_like(seq)
        _library().scsa_dwconv(
            seq.data_ptr(), weight.data_ptr(), ham_fast._ptr(None if bias is None else bias.contiguous()),
            *seq.shape, weight.shape[-1], out.data_ptr(), torch.get_num_threads(),
        )  # fmt: skip
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        seq, weight = ctx.saved_tensors
        grad = grad.contiguous()
        g_seq, g_weight = torch.empty_like(seq), torch.empty_like(weight)
        g_bias = seq.new_empty(seq.shape[1]) if ctx.has_bias else None
        _library().scsa_dwconv_backward(
            grad.data_ptr(), seq.data_ptr(), weight.data_ptr(), *seq.shape, weight.shape[-1],
            g_seq.data_ptr(), g_weight.data_ptr(), ham_fast._ptr(g_bias), torch.get_num_threads(),
        )  # fmt: skip
        return g_seq, g_weight, g_bias


def depthwise_conv1d(seq: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """Eq. (2) as one C loop: ``F.conv1d(seq, weight, bias, padding=(k - 1) // 2, groups=C)`` for float32
    sequences ``(B, C, L)``, a per-channel kernel ``(C, 1, k)`` of odd ``k`` and an optional bias ``(C,)``."""
    return _DepthwiseConv.apply(seq, weight, bias)


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


def evaluate(
    x: Tensor,
    params: Tensor,
    kernel_size: int,
    eps: tuple[float, float, float],
    window: tuple[int, int],
    heads: int,
    scale: float,
) -> tuple[Tensor, Tensor]:
    """SCSA in inference on a 2-D map in one pass per sample (``scsa_eval``): ``out`` like ``x`` and
    ``flags`` ``(B,)`` int32, 1 for the samples it left for the caller (means that are not finite).
    ``params``: float32, the SMSA kernel transposed ``(kernel_size, C)``, then ``C`` each: its bias, GN_h's,
    GN_w's and GN_1's weight and bias, q, k and v's weight and bias (zeros for none); ``eps``: the three
    norms' epsilons."""
    b, c, h, w = x.shape
    out, flags = torch.empty_like(x), torch.empty(b, dtype=torch.int32)
    threads = torch.get_num_threads()
    scratch = torch.empty(threads * _library().scsa_eval_scratch(c, h, w, *window))  # float32
    eps_t = torch.tensor(eps, dtype=torch.float32)
    getattr(_library(), "scsa_eval" + ham_fast.dtype_suffix(x.dtype))(  # one kernel for both layouts
        x.data_ptr(), b, c, h, w, ham_fast.channels_last(x), params.data_ptr(), kernel_size, eps_t.data_ptr(),
        *window, heads, scale, out.data_ptr(), flags.data_ptr(), scratch.data_ptr(), threads,
    )  # fmt: skip
    return out, flags


def pack(tensors: list[Tensor | None], kernel_sizes: tuple[int, ...], channels: int) -> Tensor:
    """:func:`evaluate`'s ``params`` from the module's tensors in one C call (``scsa_eval_pack``): the four
    SMSA convs' weights and biases, then GN_h's, GN_w's and GN_1's weight and bias and q, k, v's weight
    and bias (``None`` for an absent bias); float32 contiguous CPU tensors, as the native path has them."""
    k = max(kernel_sizes)
    params = torch.empty((k + 13) * channels)
    pointers = (ctypes.c_void_p * 20)(*(None if t is None else t.data_ptr() for t in tensors))
    sizes = (ctypes.c_int64 * 4)(*kernel_sizes)
    _library().scsa_eval_pack(pointers, sizes, channels, k, params.data_ptr())
    return params
