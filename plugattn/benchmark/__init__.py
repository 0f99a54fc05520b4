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

from plugattn.benchmark.bench import BenchReport, bench, measure
from plugattn.benchmark.counters import (
    FLOP_COUNTER,
    PeakMemory,
    count_flops,
    count_parameters,
    time_interleaved,
)

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
