"""The instruments of :mod:`plugattn.benchmark`: parameters, FLOPs with element-wise work, peak
memory tracked tensor by tensor, and interleaved timing."""

from __future__ import annotations

import statistics
import time
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from plugattn.attention import native_kernels

__all__ = [
    "DTYPES",
    "FLOP_COUNTER",
    "PeakMemory",
    "count_flops",
    "count_parameters",
    "summary",
    "time_interleaved",
]

FLOP_COUNTER = (
    "plugattn.benchmark.count_flops: conv + matmul as torch.utils.flop_counter (1 MAC = 2 FLOPs), plus "
    "element-wise work: 1 FLOP per output element of each point-wise op (add, multiply, sigmoid, ReLU, "
    "...), 1 per input element of each reduction and pooling, 4 per element of each normalisation"
)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# Normalisations: mean, variance, normalise, scale-and-shift ≈ 4 FLOPs per element.
_NORM_OPS = ("batch_norm", "group_norm", "layer_norm", "instance_norm")
_POOL_OPS = ("pool",)
_MATMUL_COUNTED = ("convolution", "mm", "bmm", "addmm", "baddbmm", "matmul", "scaled_dot_product")


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class _ElementwiseFlops(TorchDispatchMode):
    """Counts the element-wise FLOPs of the aten ops run under it (see :data:`FLOP_COUNTER`)."""

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(
        self,
        func: torch._ops.OpOverload,
        types: tuple[type, ...],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        name = func.__name__.split(".")[0]
        if any(k in name for k in _MATMUL_COUNTED):
            return out  # FlopCounterMode counts these
        first_in = next((a for a in tree_leaves(args) if isinstance(a, torch.Tensor)), None)
        if any(k in name for k in _NORM_OPS):
            self.flops += 4 * (first_in.numel() if first_in is not None else 0)
        elif torch.Tag.reduction in func.tags or any(k in name for k in _POOL_OPS):
            self.flops += first_in.numel() if first_in is not None else 0
        elif torch.Tag.pointwise in func.tags:
            first_out = next((t for t in tree_leaves(out) if isinstance(t, torch.Tensor)), None)
            self.flops += first_out.numel() if first_out is not None else 0
        return out


def count_flops(module: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """Forward FLOPs of ``module(x)`` in eval mode by :data:`FLOP_COUNTER`.

    Returns ``{"matmul": conv + matmul, "elementwise": the rest, "total": both}``. The forward runs
    with autograd on (nothing is kept), so a module's count is that of its equations as trained: an
    inference-only kernel that does a reduction as a matrix product (HAM's) does not change it.
    """
    was_training = module.training
    module.eval()
    x = x.detach().requires_grad_(x.is_floating_point())
    try:
        # The pure-torch path of HAM and SCSA (the same function): dispatch cannot see into a C kernel.
        with native_kernels(False), torch.enable_grad(), FlopCounterMode(display=False) as matmul:
            with _ElementwiseFlops() as elementwise:
                module(x)
    finally:
        module.train(was_training)
    m, e = int(matmul.get_total_flops()), int(elementwise.flops)
    return {"matmul": m, "elementwise": e, "total": m + e}


class PeakMemory(TorchDispatchMode):
    """The largest total size of tensor storages alive at once among those allocated under it.

    Each storage is counted once, from the first op that returns it until the last tensor viewing it
    is freed (autograd keeps saved tensors alive, so activations kept for backward count). ``peak`` is in
    bytes; tensors that existed before (inputs, parameters) are not counted.
    """

    def __init__(self) -> None:
        super().__init__()
        self.current = 0
        self.peak = 0
        self._sizes: dict[int, int] = {}
        self._views: dict[int, int] = {}

    def _release(self, key: int) -> None:
        self._views[key] -= 1
        if self._views[key] == 0:
            self.current -= self._sizes.pop(key)
            del self._views[key]

    def __torch_dispatch__(
        self,
        func: torch._ops.OpOverload,
        types: tuple[type, ...],
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        inputs = {id(t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor) or id(t) in inputs or t.device.type == "meta":
                continue  # in-place ops return their input: nothing new
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key == 0:
                continue
            if key not in self._sizes:  # new, or freed and handed out again by the allocator
                self._sizes[key] = storage.nbytes()
                self._views[key] = 0
                self.current += storage.nbytes()
                self.peak = max(self.peak, self.current)
            self._views[key] += 1
            weakref.finalize(t, self._release, key)
        return out


def time_interleaved(
    fns: dict[str, Callable[[], Any]], *, warmup: int, repeats: int, sync: Callable[[], None]
) -> dict[str, list[float]]:
    """Milliseconds of each call: ``warmup`` untimed calls of each, then ``repeats`` rounds calling each
    in turn."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    sync()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            sync()
            times[k].append((time.perf_counter() - start) * 1e3)
    return times


def summary(times: list[float]) -> tuple[float, float]:
    """Median and interquartile range."""
    if len(times) < 2:
        return times[0], 0.0
    q = statistics.quantiles(times, n=4)
    return statistics.median(times), q[2] - q[0]
