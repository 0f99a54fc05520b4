"""``bench`` and ``measure``: candidates side by side in one run, as a :class:`BenchReport`."""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from plugattn._checks import check_choice, check_int, check_threads
from plugattn.benchmark.counters import (
    DTYPES,
    FLOP_COUNTER,
    PeakMemory,
    count_flops,
    count_parameters,
    summary,
    time_interleaved,
)

__all__ = ["BenchReport", "bench", "measure"]


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


def _parse_shape(name: str, value: str | Sequence[int], length: int | tuple[int, ...]) -> tuple[int, ...]:
    lengths = (length,) if isinstance(length, int) else length
    try:
        dims = tuple(int(v) for v in (value.split(",") if isinstance(value, str) else value))
    except (TypeError, ValueError):
        dims = ()
    if len(dims) not in lengths or any(d < 1 for d in dims):
        counts = " or ".join(map(str, lengths))
        raise ValueError(f"{name} must be {counts} positive integers, got {value!r}")
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
    per_sample = baseline is not None
    flops = {n: count_flops(m, x[:1] if per_sample else x) for n, m in modules.items()}
    peaks = {n: _peak_bytes(m, x) if train else math.nan for n, m in modules.items()}
    fwd, train_times = _latencies(
        modules, x, per_sample=per_sample, warmup=warmup, repeats=repeats, train=train
    )
    floor_ms, _ = summary(fwd[" floor"])
    rows = []
    for n, m in modules.items():
        f_med, f_iqr = summary(fwd[n])
        t_med, t_iqr = summary(train_times[n])
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
                forward_vs_none=f_med / summary(fwd[baseline])[0],
                train_vs_none=t_med / summary(train_times[baseline])[0],
            )
        rows.append(row)
    return rows


def _latencies(
    modules: dict[str, nn.Module],
    x: torch.Tensor,
    *,
    per_sample: bool,
    warmup: int,
    repeats: int,
    train: bool,
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Forward times (eval mode, with the memory floor as ``" floor"``) and train-step times (``nan``
    when ``train`` is off), each module timed in turn; the modules are left in eval mode."""
    sync = (lambda: torch.cuda.synchronize(x.device)) if x.device.type == "cuda" else (lambda: None)
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
    for m in modules.values():
        m.eval()
    return fwd, {n: timed.get(n, [math.nan]) for n in modules}


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
    names = _parse_list("attention", attention)
    dev = _check_options(dtype, batch, warmup, repeats, threads, device)
    if (shape is None) == (model is None):
        raise ValueError("give either shape (to measure modules) or model (to measure models), not both")
    torch_dtype = DTYPES[dtype]
    generator = torch.Generator().manual_seed(seed)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    with _threads(threads):
        if model is None:
            x, modules, baseline = _module_candidates(names, shape, generator)
        else:
            x, modules, baseline = _model_candidates(names, model, input_size, batch, generator)
        x = x.to(dev, torch_dtype, memory_format=memory_format)
        modules = {n: _prepare(m, dev, torch_dtype, channels_last) for n, m in modules.items()}
        report = BenchReport(
            "module" if model is None else "model", _conditions(dev, dtype, channels_last, x.shape[0])
        )
        rows = measure(modules, x, baseline=baseline, warmup=warmup, repeats=repeats)
    report.rows = [r if model is None else {"model": model, **r} for r in rows]
    return report


def _check_options(
    dtype: str, batch: int, warmup: int, repeats: int, threads: int | None, device: str
) -> torch.device:
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
    return dev


def _module_candidates(
    names: list[str], shape: str | Sequence[int], generator: torch.Generator
) -> tuple[torch.Tensor, dict[str, nn.Module], None]:
    """A feature map of ``shape`` and each module built for its channels (no baseline)."""
    from plugattn.attention import create_attention

    b, c, h, w = _parse_shape("shape", shape, 4)
    x = torch.randn(b, c, h, w, generator=generator)
    return x, {n: create_attention(n, c) for n in names}, None


def _model_candidates(
    names: list[str], model: str, input_size: str | Sequence[int], batch: int, generator: torch.Generator
) -> tuple[torch.Tensor, dict[str, nn.Module], str]:
    """A batch of images and ``model`` with each attention, the one without attention always among
    them (the baseline, named ``"none"`` unless the user named it)."""
    from plugattn.models import create_model, model_entry

    # C,H,W for images; C,L for signals (a model sized by its input length, EEGNet, is built for L);
    # C,D,H,W for volumes.
    c, *sides = _parse_shape("input_size", input_size, (2, 3, 4))
    x = torch.randn(batch, c, *sides, generator=generator)
    sized = "n_times" in inspect.signature(model_entry(model).builder).parameters and len(sides) == 1
    extra = {"n_times": sides[0]} if sized else {}
    baseline = next((n for n in names if n.lower() == "none"), None)
    if baseline is None:
        baseline = "none"
        names = [baseline, *names]
    modules = {
        n: create_model(model, attention=None if n == baseline else n, in_chans=c, **extra) for n in names
    }
    return x, modules, baseline
