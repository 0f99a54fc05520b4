"""HAM's native CPU path: its passes over the feature map as fused C kernels (``ham_kernels.c``).

For a float32 CPU map (or a bf16 one under autocast, below), :class:`~plugattn.attention.ham.HAM` runs
its three passes over ``x`` — the channel pooling (1), the groups' descriptors (7) and the recombination
(10) — as one C loop each, and its backward as three: the recombination's reductions, the descriptors'
weight gradients, and **the whole input gradient in one pass** (the three contributions to ``∂L/∂x``
summed as they are written, where autograd would write three tensors of ``x``'s size and add them).
The small parts between the passes (top-k, BatchNorm, the gates) stay the module's own torch layers,
with autograd and hooks as usual; the channel conv runs as shifted multiply-adds with ``channel.conv``'s
weight and the 2-D spatial conv as a C kernel with ``spatial.conv``'s, so forward hooks on those two
convs fire on the pure-torch path only.

In inference (no gradient wanted, both BatchNorms in eval mode, no hook on HAM's layers), 2-D maps in
either layout take :func:`evaluate`: the whole module in one pass per sample (``ham_eval``), the map
read from memory once and written once, its steps run back to back while the sample is in cache. The
samples it cannot decide exactly as ``torch.topk`` would (a near-tie at the border of the important
group) or that hold a value that is not finite are handed back and computed pass by pass.

How the input gradient is gathered: the pooling's :class:`_Pool` also returns a zero-size ``token`` that
the descriptors and the recombination take as an input. Their backward passes leave ``∂L/∂x`` to
:class:`_Pool`, storing what it needs on a per-call :class:`_Tape`; the token makes autograd run
:class:`_Pool`'s backward after both, and always when ``x`` needs a gradient.

Under CPU autocast the map is bf16 (what autocast's convolutions give): the passes over the map read and
write it as bf16 and compute in float32 (``ham_map.h``, compiled for both element types), bit for bit what
the float32 kernels give on the map cast up with the results rounded once, and without those casts'
passes over the map; the tensors between the passes stay float32.

Equations of each kernel: the comments in ``ham_kernels.c`` and ``ham_map.h``. The pure-torch path
computes the same function and is used for everything else (other dtypes and layouts, CUDA,
``torch.compile``, tracing, export, ``torch.func`` transforms, and where no C compiler is found —
``plugattn._native``); the tests hold the two to each other, forward and backward. Double backward is
not supported on this path.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from plugattn import _native

__all__ = [
    "available",
    "descriptors",
    "dtype_suffix",
    "evaluate",
    "native_kernels",
    "pool",
    "recombine",
    "status",
    "usable",
]

SOURCE = Path(__file__).with_name("ham_kernels.c")
_F = ctypes.c_float
_I = ctypes.c_int64
_P = ctypes.c_void_p
_C = ctypes.c_int
# (argtypes, restype) of each kernel; both input-gradient kernels take the same arguments.
_INPUT_BACKWARD = (_P, _P, _P, _P, _P, _P, _P, _P, _F, _F, _P, _P, _P, _I, _I, _I, _P, _P, ctypes.c_int)
_MAP_PASSES = {
    "ham_pool": ((_P, _I, _I, _P, _P, _P, ctypes.c_int), None),
    "ham_descriptors": ((_P, _P, _P, _I, _I, _I, _F, _F, _P, _P, _P, _P, ctypes.c_int), None),
    "ham_recombine": ((_P, _P, _P, _P, _I, _I, _I, _P, ctypes.c_int), None),
    "ham_recombine_backward": ((_P, _P, _P, _P, _P, _I, _I, _I, _P, _P, _P, ctypes.c_int), None),
    "ham_descriptors_backward": ((_P, _P, _P, _P, _P, _I, _I, _I, _F, _F, _P, _P, ctypes.c_int), None),
    "ham_input_backward": (_INPUT_BACKWARD, None),
    "ham_pool_cl": ((_P, _I, _I, _I, _P, _P, _P, ctypes.c_int), None),
    "ham_descriptors_cl": ((_P, _P, _P, _I, _I, _I, _F, _F, _P, _P, _P, _P, ctypes.c_int), None),
    "ham_recombine_cl": ((_P, _P, _P, _P, _I, _I, _I, _P, ctypes.c_int), None),
    "ham_recombine_backward_cl": ((_P, _P, _P, _P, _P, _I, _I, _I, _P, _P, _P, ctypes.c_int), None),
    "ham_descriptors_backward_cl": ((_P, _P, _P, _P, _P, _I, _I, _I, _F, _F, _P, _P, ctypes.c_int), None),
    "ham_input_backward_cl": (_INPUT_BACKWARD, None),
    "ham_eval": (
        (_P, _I, _I, _I, _I, _C, _P, _I, _F, _F, _C, _I, _P, _I, _P, _P, _P, _P, _C),
        None,
    ),
}
# The passes over the map exist for float32 maps and, with the same arguments, for bfloat16 maps (the
# names ending in _bf16, ham_map.h); the others take float32 only.
_SIGNATURES = {
    **_MAP_PASSES,
    **{name + "_bf16": signature for name, signature in _MAP_PASSES.items()},
    "ham_spatial_conv_scratch": ((_I, _I, _I), _I),
    "ham_spatial_conv": ((_P, _P, _P, _I, _I, _I, _I, _P, _P, ctypes.c_int), None),
    "ham_spatial_conv_backward": ((_P, _P, _P, _P, _I, _I, _I, _I, _P, _P, _P, _P, ctypes.c_int), None),
    "ham_eval_scratch": ((_I, _I, _I, _I), _I),
    "ham_gates": ((_P, _I, _I, _P, _F, _C, _P, _P, _C), None),
    "ham_gates_backward": ((_P, _P, _P, _I, _I, _P, _C, _P, _P, _P, _C), None),
    "ham_channel": ((_P, _P, _I, _I, _P, _I, _F, _F, _C, _P), None),
    "ham_channel_backward": ((_P, _P, _P, _P, _I, _I, _P, _I, _F, _F, _C, _P, _P, _P, _P), None),
}
_ENABLED = [True]


@contextmanager
def native_kernels(enabled: bool) -> Iterator[None]:
    """Within the block HAM and SCSA use their native kernels (``True``, the default where they are
    built) or their pure-torch path (``False``): e.g. to count FLOPs by dispatch, which cannot see into
    a C kernel, or to compare the two paths."""
    if not isinstance(enabled, bool):
        raise ValueError(f"enabled must be True or False, got {enabled!r}")
    before = _ENABLED[0]
    _ENABLED[0] = enabled
    try:
        yield
    finally:
        _ENABLED[0] = before


def _library() -> ctypes.CDLL | None:
    return _native.load(SOURCE, _SIGNATURES)


def available() -> bool:
    """Whether the kernels are built and loaded in this process (building them on first call)."""
    return _library() is not None


def status() -> str:
    """``"native (…)"`` or why not (``plugattn._native.status``)."""
    _library()
    return _native.status(SOURCE.stem)


def channels_last(x: Tensor) -> bool:
    """Whether ``x`` (4-D) is laid out channels-last and not also plainly contiguous (as 1×1 maps are)."""
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def plain(t: Tensor, dtypes: tuple[torch.dtype, ...] = (torch.float32,)) -> bool:
    """A CPU tensor of one of ``dtypes`` with its own storage: a tensor or a parameter, not another
    subclass, not a ``torch.func`` wrapper."""
    return (
        type(t) in (Tensor, torch.nn.Parameter)
        and t.dtype in dtypes
        and t.device.type == "cpu"
        and not torch._C._functorch.is_functorch_wrapped_tensor(t)
    )


def _map_fits(x: Tensor, dtypes: tuple[torch.dtype, ...], others: tuple[Tensor, ...]) -> bool:
    if torch.compiler.is_compiling() or torch.jit.is_tracing() or not _ENABLED[0]:  # dynamo stops here
        return False
    return (
        plain(x, dtypes)
        and x.dim() >= 3
        and (x.is_contiguous() or channels_last(x))
        and x.numel() > 0
        and math.prod(x.shape[2:]) < 2**31
        and all(plain(t) for t in others)
        and available()
    )


def usable(x: Tensor, *others: Tensor) -> bool:
    """Whether a call on ``x`` takes the native path: ``x`` (and the module's tensors ``others``) plain
    float32 CPU tensors (:func:`plain`), ``x`` contiguous or channels-last (2-D), with positions; no
    ``torch.compile``, tracing or CPU autocast in progress; and the kernels built."""
    return not torch.is_autocast_enabled("cpu") and _map_fits(x, (torch.float32,), others)


def usable_in_float32(x: Tensor, *others: Tensor) -> bool:
    """Whether a call on ``x`` under CPU autocast takes the native path computing in float32: ``x`` a
    bf16/fp16 map, as autocast's convolutions give, the module's tensors float32, otherwise as
    :func:`usable`. The module computes in float32, as autocast does for the operations it keeps in
    float32 (norms, softmax). A bf16 map is read and written as it is by the ``_bf16`` kernels (its
    values widened as they are loaded, the results rounded once to nearest even: bit for bit the float32
    kernels on the map cast up, without the casts' passes); an fp16 map is cast up and the output back."""
    half = (torch.bfloat16, torch.float16)
    return torch.is_autocast_enabled("cpu") and _map_fits(x, half, others)


def _layout(x: Tensor) -> torch.memory_format:
    return torch.channels_last if channels_last(x) else torch.contiguous_format


def dtype_suffix(dtype: torch.dtype) -> str:
    """The end of a map pass's name for maps of ``dtype``: ``"_bf16"`` for bfloat16, none for float32
    (``ham_map.h``, ``scsa_map.h``)."""
    return "_bf16" if dtype == torch.bfloat16 else ""


def _kernel(name: str, layout: torch.memory_format, dtype: torch.dtype = torch.float32) -> ctypes._CFuncPtr:
    """The pass ``name`` for maps of ``layout`` and ``dtype`` (float32 or bfloat16)."""
    suffix = ("_cl" if layout == torch.channels_last else "") + dtype_suffix(dtype)
    return getattr(_native_lib(), name + suffix)


def _ptr(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _threads() -> int:
    return torch.get_num_threads()


def _sizes(x: Tensor) -> tuple[int, int, int]:
    return x.shape[0], x.shape[1], math.prod(x.shape[2:])


class _Tape:
    """What one call's backward passes hand to the input-gradient pass."""

    def __init__(self) -> None:
        self.arg: Tensor | None = None  # (B, C) int32: arg-max of the channel pooling
        self.w1: Tensor | None = None  # (B, C) group weights, as the forward used them
        self.w2: Tensor | None = None
        self.a: Tensor | None = None  # (B, 2, N) spatial maps
        self.idx: tuple[Tensor, Tensor] | None = None  # (B, N) int32: the descriptors' arg-max channels
        self.sizes = (1, 1)  # the groups' sizes n1, n2
        self.grad_out: Tensor | None = None  # ∂L/∂out, from the recombination's backward
        self.grad_d: tuple[Tensor, Tensor] | None = None  # ∂L/∂d1, ∂L/∂d2, from the descriptors' backward


def pool(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Eq. (1) with arg-max: ``f_avg``, ``f_max`` ``(B, C)`` and the first position of each max."""
    b, c, n = _sizes(x)
    avg, mx = torch.empty(b, c), torch.empty(b, c)  # float32, whatever the map's dtype
    arg = torch.empty(b, c, dtype=torch.int32)
    if channels_last(x):
        _kernel("ham_pool", torch.channels_last, x.dtype)(
            x.data_ptr(), b, n, c, avg.data_ptr(), mx.data_ptr(), arg.data_ptr(), _threads()
        )
    else:
        _kernel("ham_pool", torch.contiguous_format, x.dtype)(
            x.data_ptr(), b * c, n, avg.data_ptr(), mx.data_ptr(), arg.data_ptr(), _threads()
        )
    return avg, mx, arg


def descriptors(x: Tensor, w1: Tensor, w2: Tensor, n1: int, n2: int) -> tuple[Tensor, ...]:
    """Eq. (7): ``d1``, ``d2`` ``(B, 2, *S)`` and the arg-max channels ``i1``, ``i2`` ``(B, N)``."""
    b, c, n = _sizes(x)
    w1, w2 = w1.contiguous(), w2.contiguous()
    d1, d2 = torch.empty(b, 2, *x.shape[2:]), torch.empty(b, 2, *x.shape[2:])  # float32
    i1, i2 = torch.empty(b, n, dtype=torch.int32), torch.empty(b, n, dtype=torch.int32)
    _kernel("ham_descriptors", _layout(x), x.dtype)(
        *(x.data_ptr(), w1.data_ptr(), w2.data_ptr()), b, c, n, n1, n2,
        *(d1.data_ptr(), d2.data_ptr(), i1.data_ptr(), i2.data_ptr()), _threads(),
    )  # fmt: skip
    return d1, d2, i1, i2


def recombine(x: Tensor, w1: Tensor, w2: Tensor, a: Tensor) -> Tensor:
    """Eq. (10): ``x · (w1 ⊗ a1 + w2 ⊗ a2)`` with ``a`` ``(B, 2, *S)`` = [a1; a2]."""
    b, c, n = _sizes(x)
    w1, w2, a = w1.contiguous(), w2.contiguous(), a.contiguous()
    out = torch.empty_like(x)  # in x's layout and dtype
    _kernel("ham_recombine", _layout(x), x.dtype)(
        x.data_ptr(), w1.data_ptr(), w2.data_ptr(), a.data_ptr(), b, c, n, out.data_ptr(), _threads()
    )
    return out


def evaluate(
    x: Tensor,
    channel_weight: Tensor,
    mix: tuple[float, float] | None,
    n1: int,
    spatial_weight: Tensor,
    norm: Tensor,
) -> tuple[Tensor, Tensor]:
    """Eval-mode HAM on a 2-D map in one pass per sample (``ham_eval``): ``out`` like ``x`` and ``flags``
    ``(B,)`` int32, 1 for the samples it left for the caller (a value that is not finite, or a near-tie at
    the border of the important group). ``mix``: ``(α, β)``, ``None`` without the adaptive mix; ``norm``:
    ``(4,)`` float32, scale and shift of each group's BatchNorm."""
    b, c, h, w = x.shape
    k = spatial_weight.shape[-1]
    channel_weight, spatial_weight = channel_weight.contiguous(), spatial_weight.contiguous()
    out, flags = torch.empty_like(x), torch.empty(b, dtype=torch.int32)
    threads = _threads()
    scratch = torch.empty(threads * _native_lib().ham_eval_scratch(c, h, w, k))  # float32
    alpha, beta = mix if mix is not None else (0.0, 0.0)
    _kernel("ham_eval", torch.contiguous_format, x.dtype)(  # one kernel for both layouts
        x.data_ptr(), b, c, h, w, channels_last(x), channel_weight.data_ptr(), channel_weight.numel(),
        alpha, beta, mix is not None, n1, spatial_weight.data_ptr(), k, norm.data_ptr(),
        *(out.data_ptr(), flags.data_ptr(), scratch.data_ptr()), threads,
    )  # fmt: skip
    return out, flags


class _Pool(torch.autograd.Function):
    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, tape: _Tape) -> tuple[Tensor, Tensor, Tensor]:
        avg, mx, tape.arg = pool(x)
        ctx.tape = tape
        ctx.shape, ctx.layout, ctx.dtype = x.shape, _layout(x), x.dtype
        return avg, mx, x.new_empty(0)  # the token

    @staticmethod
    @once_differentiable
    def backward(
        ctx: FunctionCtx, g_avg: Tensor, g_max: Tensor, _token: Tensor
    ) -> tuple[Tensor | None, None]:
        tape = ctx.tape
        b, c = ctx.shape[:2]
        n = math.prod(ctx.shape[2:])
        g_avg, g_max = g_avg.contiguous(), g_max.contiguous()
        gd1, gd2 = tape.grad_d if tape.grad_d is not None else (None, None)
        i1, i2 = tape.idx
        grad_x = torch.empty(ctx.shape, dtype=ctx.dtype, memory_format=ctx.layout)
        threads = _threads()
        # A bf16 gradient is summed per sample in float32 scratch and rounded once (ham_map.h).
        scratch = torch.empty(threads * c * n) if ctx.dtype == torch.bfloat16 else None
        _kernel("ham_input_backward", ctx.layout, ctx.dtype)(
            *(_ptr(tape.grad_out), tape.w1.data_ptr(), tape.w2.data_ptr(), tape.a.data_ptr()),
            *(_ptr(gd1), _ptr(gd2), i1.data_ptr(), i2.data_ptr(), *map(float, tape.sizes)),
            *(g_avg.data_ptr(), g_max.data_ptr(), tape.arg.data_ptr()), b, c, n,
            grad_x.data_ptr(), _ptr(scratch), threads,
        )  # fmt: skip
        tape.grad_out = tape.grad_d = None  # freed now; a second backward (retain_graph) sets them again
        return grad_x, None


def _native_lib() -> ctypes.CDLL:
    lib = _library()
    if lib is None:  # the forward ran natively, so the library is loaded; kept as a clear error
        raise RuntimeError("plugattn's HAM kernels were unloaded between forward and backward")
    return lib


class _Descriptors(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: FunctionCtx, x: Tensor, w1: Tensor, w2: Tensor, _token: Tensor, tape: _Tape
    ) -> tuple[Tensor, Tensor]:
        d1, d2, i1, i2 = descriptors(x, w1, w2, *tape.sizes)
        tape.idx = (i1, i2)
        ctx.save_for_backward(x)
        ctx.tape = tape
        return d1, d2

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, gd1: Tensor, gd2: Tensor) -> tuple[Tensor | None, ...]:
        (x,) = ctx.saved_tensors
        tape = ctx.tape
        b, c, n = _sizes(x)
        gd1, gd2 = gd1.contiguous(), gd2.contiguous()
        gw1, gw2 = torch.empty(b, c), torch.empty(b, c)  # float32, as w1 and w2
        i1, i2 = tape.idx
        _kernel("ham_descriptors_backward", _layout(x), x.dtype)(
            *(x.data_ptr(), gd1.data_ptr(), gd2.data_ptr(), i1.data_ptr(), i2.data_ptr()), b, c, n,
            *map(float, tape.sizes), gw1.data_ptr(), gw2.data_ptr(), _threads(),
        )  # fmt: skip
        tape.grad_d = (gd1, gd2)
        return None, gw1, gw2, x.new_zeros(0), None


class _Recombine(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: FunctionCtx, x: Tensor, w1: Tensor, w2: Tensor, a: Tensor, _token: Tensor, tape: _Tape
    ) -> Tensor:
        ctx.save_for_backward(x)
        tape.w1, tape.w2, tape.a = w1.detach().contiguous(), w2.detach().contiguous(), a.detach().contiguous()
        ctx.tape = tape
        return recombine(x, tape.w1, tape.w2, tape.a)

    @staticmethod
    @once_differentiable
    def backward(ctx: FunctionCtx, grad: Tensor) -> tuple[Tensor | None, ...]:
        (x,) = ctx.saved_tensors
        tape = ctx.tape
        b, c, n = _sizes(x)
        grad = grad.to(x.dtype).contiguous(memory_format=_layout(x))  # a copy only where it differs
        gw1, gw2, ga = torch.empty(b, c), torch.empty(b, c), torch.empty_like(tape.a)  # float32
        _kernel("ham_recombine_backward", _layout(x), x.dtype)(
            *(grad.data_ptr(), x.data_ptr(), tape.w1.data_ptr(), tape.w2.data_ptr(), tape.a.data_ptr()),
            b, c, n, gw1.data_ptr(), gw2.data_ptr(), ga.data_ptr(), _threads(),
        )  # fmt: skip
        tape.grad_out = grad
        return None, gw1, gw2, ga, x.new_zeros(0), None


def pool_with_autograd(x: Tensor, sizes: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor, _Tape]:
    """The channel pooling of the training path: ``f_avg``, ``f_max``, the token and the call's tape."""
    tape = _Tape()
    tape.sizes = sizes
    avg, mx, token = _Pool.apply(x, tape)
    return avg, mx, token, tape


def descriptors_with_autograd(
    x: Tensor, w1: Tensor, w2: Tensor, token: Tensor, tape: _Tape
) -> tuple[Tensor, Tensor]:
    return _Descriptors.apply(x, w1, w2, token, tape)


def recombine_with_autograd(
    x: Tensor, w1: Tensor, w2: Tensor, a: Tensor, token: Tensor, tape: _Tape
) -> Tensor:
    return _Recombine.apply(x, w1, w2, a, token, tape)
