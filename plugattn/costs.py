"""What a model costs: parameters, FLOPs (with the counter named) and measured latency.

FLOP counters see convolutions and matrix products only; attention modules do much of their work in
element-wise ops that no counter sees, so latency is always reported beside FLOPs.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_flops", "count_parameters", "measure_latency", "model_costs"]

FLOP_COUNTER = (
    "torch.utils.flop_counter.FlopCounterMode (conv + matmul; 1 MAC = 2 FLOPs; element-wise not counted)"
)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_flops(model: nn.Module, x: torch.Tensor) -> int:
    """Forward FLOPs of ``model(x)`` by :data:`FLOP_COUNTER`."""
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return int(counter.get_total_flops())


@torch.no_grad()
def measure_latency(
    model: nn.Module, x: torch.Tensor, *, warmup: int = 3, repeats: int = 20
) -> dict[str, float]:
    """Forward latency in milliseconds: median and interquartile range over ``repeats`` timed calls
    after ``warmup`` calls (CUDA synchronised)."""
    was_training = model.training
    model.eval()
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    for _ in range(warmup):
        model(x)
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(x)
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    model.train(was_training)
    q = statistics.quantiles(times, n=4)
    return {"median_ms": statistics.median(times), "q1_ms": q[0], "q3_ms": q[2]}


def model_costs(model: nn.Module, input_shape: tuple[int, ...], *, latency_batch: int = 1) -> dict[str, Any]:
    """Parameters, forward FLOPs for one image, and batch-``latency_batch`` latency on the model's device."""
    device = next(model.parameters()).device
    one = torch.randn(1, *input_shape, device=device)
    lat = measure_latency(model, torch.randn(latency_batch, *input_shape, device=device))
    return {
        "params": count_parameters(model),
        "flops": count_flops(model, one),
        "latency_ms": lat["median_ms"],
        "latency_iqr_ms": lat["q3_ms"] - lat["q1_ms"],
    }
