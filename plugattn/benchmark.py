"""What an attention module or a model costs, measured side by side in one run.

:func:`bench` measures, for each candidate:

* **parameters**;
* **forward FLOPs** by :data:`FLOP_COUNTER`: convolutions and matrix products as
  ``torch.utils.flop_counter`` counts them, *plus* the element-wise work common counters skip (sigmoid,
  multiplies, pooling, norms), which is most of an attention module's real cost;
* **latency** of the forward pass (eval mode, no autograd) and of forward + backward (train mode), after
  warm-up calls, as the median and the interquartile range of timed calls. Candidates are timed in turn,
  call by call, so a drift in the machine's load hits them all alike;
* **peak memory** of forward + backward: the largest total size of tensors alive at once that the call
  allocated (its input excluded), tracked tensor by tensor (:class:`PeakMemory`), so it works on the CPU
  as on CUDA;
* modules: **the memory floor** — the time to copy the input once (reading and writing as many bytes as
  any ``x · gate`` must), measured in the same loop — and the forward latency's ratio to it;
* models: **overhead against no attention** — the same backbone without attention is always measured
  in the same run, and each row gives its latencies relative to it.

Every report carries its conditions (device, dtype, layout, threads, batch, torch, CPU capability) and
prints as a table or writes CSV and JSON. ``plugattn bench`` is the command line over it.
"""

from __future__ import annotations

import json
import math
import statistics
import time
import weakref
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from plugattn._checks import check_choice, check_int, check_threads

__all__ = [
    "FLOP_COUNTER",
    "BenchReport",
    "PeakMemory",
    "bench",
    "count_flops",
    "count_parameters",
    "measure",
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

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN206
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
        with torch.enable_grad(), FlopCounterMode(display=False) as matmul:
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

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN206
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


def _summary(times: list[float]) -> tuple[float, float]:
    """Median and interquartile range."""
    if len(times) < 2:
        return times[0], 0.0
    q = statistics.quantiles(times, n=4)
    return statistics.median(times), q[2] - q[0]


@dataclass
class BenchReport:
    """Rows of measurements and the conditions they were taken under."""

    kind: str  # "module" or "model"
    conditions: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)

    def table(self) -> str:
        """A Markdown table with the conditions above it."""
        cond = ", ".join(f"{k} {v}" for k, v in self.conditions.items())
        if self.kind == "module":
            header = [
                "attention",
                "input",
                "params",
                "MFLOPs (mm + elem)",
                "fwd ms (IQR)",
                "fwd+bwd ms (IQR)",
                "peak MB",
                "floor ms",
                "fwd / floor",
            ]
            body = [
                [r["attention"], r["input"], f"{r['params']:,}",
                 f"{r['mflops']:.1f} ({r['mflops_matmul']:.1f} + {r['mflops_elementwise']:.1f})",
                 f"{r['forward_ms']:.3f} ({r['forward_iqr_ms']:.3f})",
                 f"{r['train_ms']:.3f} ({r['train_iqr_ms']:.3f})", f"{r['peak_mb']:.1f}",
                 f"{r['floor_ms']:.3f}", f"{r['floor_ratio']:.2f}×"]
                for r in self.rows
            ]  # fmt: skip
        else:
            header = [
                "model",
                "attention",
                "params",
                "MFLOPs/img (mm + elem)",
                "fwd ms (IQR)",
                "fwd+bwd ms (IQR)",
                "train img/s",
                "peak MB",
                "fwd vs none",
                "fwd+bwd vs none",
            ]
            body = [
                [r["model"], r["attention"], f"{r['params']:,}",
                 f"{r['mflops']:.1f} ({r['mflops_matmul']:.1f} + {r['mflops_elementwise']:.1f})",
                 f"{r['forward_ms']:.2f} ({r['forward_iqr_ms']:.2f})",
                 f"{r['train_ms']:.2f} ({r['train_iqr_ms']:.2f})", f"{r['train_images_per_s']:.0f}",
                 f"{r['peak_mb']:.1f}", f"{r['forward_vs_none']:.2f}×", f"{r['train_vs_none']:.2f}×"]
                for r in self.rows
            ]  # fmt: skip
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(map(str, row)) + " |" for row in body]
        return f"Conditions: {cond}.\nFLOPs: {FLOP_COUNTER}.\n\n" + "\n".join(lines) + "\n"

    def to_csv(self, path: str | Path) -> Path:
        """One line per row; every line carries the conditions."""
        from plugattn.report import write_csv

        header = [*self.rows[0], *self.conditions]
        return write_csv(path, header, [[*r.values(), *self.conditions.values()] for r in self.rows])

    def to_json(self, path: str | Path) -> Path:
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps({"kind": self.kind, "conditions": self.conditions, "rows": self.rows},
                                  indent=2) + "\n")  # fmt: skip
        tmp.replace(path)
        return path


@contextmanager
def _threads(n: int | None):
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _conditions(device: torch.device, dtype: str, channels_last: bool, batch: int) -> dict[str, Any]:
    cond = {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "dtype": dtype,
        "layout": "channels_last" if channels_last else "contiguous",
        "threads": torch.get_num_threads(),
        "batch": batch,
        "torch": torch.__version__,
    }
    if device.type == "cpu":
        cond["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        cond["native_bf16"] = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return cond


def _prepare(module: nn.Module, device: torch.device, dtype: torch.dtype, channels_last: bool) -> nn.Module:
    module = module.to(device=device, dtype=dtype)
    return module.to(memory_format=torch.channels_last) if channels_last else module


def _forward(module: nn.Module, x: torch.Tensor) -> Callable[[], Any]:
    def run() -> None:
        with torch.no_grad():
            module(x)

    return run


def _train_step(module: nn.Module, x: torch.Tensor) -> Callable[[], Any]:
    def run() -> None:
        module.zero_grad(set_to_none=True)
        module(x).float().sum().backward()

    return run


def _peak_bytes(module: nn.Module, x: torch.Tensor) -> int:
    module.train()
    module.zero_grad(set_to_none=True)
    with PeakMemory() as tracker:
        module(x).float().sum().backward()
    return tracker.peak


def _parse_list(name: str, value: str | Sequence[str]) -> list[str]:
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v) for v in value]
    items = [v for v in items if v]
    if not items:
        raise ValueError(f"{name} must name at least one module, got {value!r}")
    if len(set(items)) != len(items):
        raise ValueError(f"{name} names a module twice: {value!r}")
    return items


def _parse_shape(name: str, value: str | Sequence[int], length: int) -> tuple[int, ...]:
    try:
        dims = tuple(int(v) for v in (value.split(",") if isinstance(value, str) else value))
    except (TypeError, ValueError):
        dims = ()
    if len(dims) != length or any(d < 1 for d in dims):
        raise ValueError(f"{name} must be {length} positive integers, got {value!r}")
    return dims


def measure(
    modules: dict[str, nn.Module],
    x: torch.Tensor,
    *,
    baseline: str | None = None,
    warmup: int = 3,
    repeats: int = 20,
    train: bool = True,
) -> list[dict[str, Any]]:
    """Measure ``modules`` (each taking ``x``) side by side; one row of plain numbers per module.

    Rows hold ``params``, ``mflops``/``mflops_matmul``/``mflops_elementwise`` (of the whole ``x`` when
    ``baseline`` is ``None``, else per sample), ``forward_ms``/``forward_iqr_ms`` (eval, no autograd),
    ``train_ms``/``train_iqr_ms`` (forward + backward, train mode) and ``peak_mb``. Without a
    ``baseline`` (modules on a feature map) also ``floor_ms``, the time to copy ``x`` once, and
    ``floor_ratio``; with one (models, ``baseline`` naming the one without attention) also
    ``train_images_per_s``, ``forward_vs_none`` and ``train_vs_none``. ``train=False`` measures the
    forward pass only (no train-mode column, no peak memory). The modules are left in eval mode.
    """
    sync = (lambda: torch.cuda.synchronize(x.device)) if x.device.type == "cuda" else (lambda: None)
    per_sample = baseline is not None
    flops = {n: count_flops(m, x[:1] if per_sample else x) for n, m in modules.items()}
    peaks = {n: _peak_bytes(m, x) if train else math.nan for n, m in modules.items()}
    x_grad = x.detach().clone().requires_grad_(not per_sample)  # a module's input needs its gradient
    for m in modules.values():
        m.eval()
    fns: dict[str, Callable[[], Any]] = {n: _forward(m, x) for n, m in modules.items()}
    dst = torch.empty_like(x)
    fns[" floor"] = lambda: dst.copy_(x)  # the leading space keeps it apart from any module name
    fwd = time_interleaved(fns, warmup=warmup, repeats=repeats, sync=sync)
    for m in modules.values():
        m.train()
    steps = {n: _train_step(m, x_grad) for n, m in modules.items()} if train else {}
    timed = time_interleaved(steps, warmup=warmup, repeats=repeats, sync=sync)
    train_times = {n: timed.get(n, [math.nan]) for n in modules}
    for m in modules.values():
        m.eval()

    floor_ms, _ = _summary(fwd[" floor"])
    rows = []
    for n, m in modules.items():
        f_med, f_iqr = _summary(fwd[n])
        t_med, t_iqr = _summary(train_times[n])
        row: dict[str, Any] = {
            "attention": n,
            "input": "x".join(map(str, x.shape)),
            "params": count_parameters(m),
            "mflops": flops[n]["total"] / 1e6,
            "mflops_matmul": flops[n]["matmul"] / 1e6,
            "mflops_elementwise": flops[n]["elementwise"] / 1e6,
            "forward_ms": f_med,
            "forward_iqr_ms": f_iqr,
            "train_ms": t_med,
            "train_iqr_ms": t_iqr,
            "peak_mb": peaks[n] / 1e6,
        }
        if baseline is None:
            row.update(floor_ms=floor_ms, floor_ratio=f_med / floor_ms if floor_ms > 0 else math.nan)
        else:
            row.update(
                train_images_per_s=1e3 * x.shape[0] / t_med,
                forward_vs_none=f_med / _summary(fwd[baseline])[0],
                train_vs_none=t_med / _summary(train_times[baseline])[0],
            )
        rows.append(row)
    return rows


def bench(
    attention: str | Sequence[str] = ("ham", "scsa"),
    *,
    shape: str | Sequence[int] | None = None,
    model: str | None = None,
    input_size: str | Sequence[int] = (3, 32, 32),
    batch: int = 64,
    device: str = "cpu",
    dtype: str = "float32",
    channels_last: bool = False,
    threads: int | None = None,
    warmup: int = 3,
    repeats: int = 20,
    seed: int = 0,
) -> BenchReport:
    """Measure attention modules on a feature map, or models with several attention modules.

    Modules: ``bench("ham,scsa", shape=(128, 16, 32, 32))`` — each module built for ``C`` channels.
    Models: ``bench("ham,scsa", model="resnet20", input_size=(1, 28, 28), batch=256)`` — the backbone
    without attention is measured too, and each row is compared with it.

    ``dtype`` casts parameters and input (``float32``, ``bfloat16``, ``float16``); ``channels_last``
    puts both in that layout; ``threads`` sets torch's intra-op threads for the measurement only.
    Latencies are in milliseconds; :func:`measure` says what each column means.
    """
    from plugattn.attention import create_attention
    from plugattn.models import create_model

    names = _parse_list("attention", attention)
    check_choice("dtype", dtype, tuple(DTYPES))
    check_int("batch", batch, minimum=1)
    check_int("warmup", warmup, minimum=0)
    check_int("repeats", repeats, minimum=1)
    if threads is not None:
        check_threads("threads", threads)
    if not isinstance(device, str) or not (device == "cpu" or device.startswith("cuda")):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but torch sees no CUDA device")
    if (shape is None) == (model is None):
        raise ValueError("give either shape (to measure modules) or model (to measure models), not both")
    torch_dtype = DTYPES[dtype]
    generator = torch.Generator().manual_seed(seed)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    with _threads(threads):
        if model is None:
            b, c, h, w = _parse_shape("shape", shape, 4)
            x = torch.randn(b, c, h, w, generator=generator)
            modules = {n: create_attention(n, c) for n in names}
            baseline = None
        else:
            c, h, w = _parse_shape("input_size", input_size, 3)
            x = torch.randn(batch, c, h, w, generator=generator)
            baseline = next((n for n in names if n.lower() == "none"), None)
            if baseline is None:
                baseline = "none"
                names = [baseline, *names]
            modules = {
                n: create_model(model, attention=None if n == baseline else n, in_chans=c) for n in names
            }
        x = x.to(dev, torch_dtype, memory_format=memory_format)
        modules = {n: _prepare(m, dev, torch_dtype, channels_last) for n, m in modules.items()}
        report = BenchReport(
            "module" if model is None else "model", _conditions(dev, dtype, channels_last, x.shape[0])
        )
        rows = measure(modules, x, baseline=baseline, warmup=warmup, repeats=repeats)
    report.rows = [r if model is None else {"model": model, **r} for r in rows]
    return report
