"""HAM and SCSA forward + backward with their small steps fused against those steps' layers one by one.

SCSA's gates (scsa_gates.py) and HAM's channel map (ham_channel.py) run as one C call each where their
layers are the module's own without hooks; "layers" is the path the module takes when a hook sits on a
norm or a gate (for SCSA: SMSA's depthwise conv as a C loop, the GroupNorms, sigmoids and PCSA's
attention as torch layers and pcsa_kernels.c; for HAM: the mix, the channel conv as shifted sums and the
sigmoid as torch operations). Both run the native passes over the map. The two are timed in turn in one
process, medians of alternating calls, in float32 and under bf16 autocast, channels_last and contiguous,
and printed as markdown tables (recorded in docs/performance.md).

    python benchmarks/fused_steps_ab.py [--repeats 15] [--module scsa,ham]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Iterator

import torch

import plugattn
from plugattn.attention.ham import HAMChannel
from plugattn.attention.scsa import SCSA
from plugattn.engine.memory import keep_freed_memory

SHAPES = [
    (256, 16, 28, 28), (256, 32, 14, 14), (256, 64, 7, 7), (256, 16, 32, 32), (256, 32, 16, 16),
    (256, 64, 8, 8), (128, 64, 8, 8), (32, 256, 14, 14), (32, 64, 56, 56), (128, 16, 32, 32),
]  # fmt: skip
LAYOUTS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}


# The methods that decide whether a module's small steps run fused, by module.
FUSES = {"scsa": (SCSA, ("_fuses_smsa", "_fuses_pcsa")), "ham": (HAMChannel, ("_fuses",))}


@contextlib.contextmanager
def steps_fused(module: str, fused: bool) -> Iterator[None]:
    """The module's small steps fused (as shipped) or, as with a hook on their layers, layer by layer."""
    cls, names = FUSES[module]
    saved = {name: getattr(cls, name) for name in names}
    if not fused:
        for name in names:
            setattr(cls, name, lambda self: False)
    try:
        yield
    finally:
        for name, method in saved.items():
            setattr(cls, name, method)


def median_ms(
    module: str, shape: tuple[int, ...], fmt: torch.memory_format, bf16: bool, repeats: int
) -> dict[bool, float]:
    m = plugattn.create_attention(module, shape[1]).train()
    dtype = torch.bfloat16 if bf16 else torch.float32
    x = torch.randn(shape).to(dtype).contiguous(memory_format=fmt).requires_grad_()
    grad = torch.randn(shape).to(dtype).contiguous(memory_format=fmt)

    def step(fused: bool) -> float:
        start = time.perf_counter()
        with steps_fused(module, fused), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            y = m(x)
        y.backward(grad)
        return (time.perf_counter() - start) * 1e3

    for fused in (False, True, False, True):
        step(fused)
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(repeats):
        for fused in (False, True):
            times[fused].append(step(fused))
    return {fused: statistics.median(t) for fused, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--module", default="scsa,ham", help="comma-separated: scsa, ham")
    args = parser.parse_args()
    memory = keep_freed_memory()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu_capability "
        f"{torch.backends.cpu.get_cpu_capability()}, native bf16 "
        f"{torch.ops.mkldnn._is_mkldnn_bf16_supported()}, memory {memory}\n"
    )
    for module in args.module.split(","):
        print(f"\n{module}:\n")
        columns = ["input", "layout", "float32: layers → fused, ms", "speed-up"]
        columns += ["bf16 autocast: layers → fused, ms", "speed-up"]
        print("| " + " | ".join(columns) + " |")
        print("|---|---|---|---|---|---|")
        for shape in SHAPES:
            for layout, fmt in LAYOUTS.items():
                cells = []
                for bf16 in (False, True):
                    t = median_ms(module, shape, fmt, bf16, args.repeats)
                    cells += [f"{t[False]:.2f} → {t[True]:.2f}", f"{t[False] / t[True]:.2f}×"]
                print(f"| {'×'.join(map(str, shape))} | {layout} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
