"""Side-by-side speed and memory of the attention modules, as ratios measured in one run.

1. HAM and SCSA against straightforward transcriptions (benchmarks/naive.py), forward + backward,
   at the feature-map shapes of a CIFAR ResNet and of ResNet-50 (after checking they agree).
2. Every registered module in ResNet-20: training images/s relative to ResNet-20 without attention.
3. Memory kept for backward by each module, relative to the floor (its input, which any x·gate needs).

Writes docs/benchmark_attention.md (with the conditions) and prints it. Timings are medians of
interleaved repeats; on a shared machine compare ratios, not absolute times.

    python benchmarks/attention_speed.py [--quick]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from naive import NaiveHAM, NaiveSCSA  # noqa: E402

import plugattn  # noqa: E402
from plugattn.attention._common import eca_kernel_size  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def fwd_bwd(module: torch.nn.Module, x: torch.Tensor) -> None:
    module(x).sum().backward()


def interleaved(fns: dict, repeats: int) -> dict[str, float]:
    """Median ms of each fn, calling them in turn so drifts in machine load hit all alike."""
    for fn in fns.values():
        fn()
        fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append((time.perf_counter() - t) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def saved_bytes(module: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes of distinct storages autograd keeps for backward (the activation memory)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(x)
    return sum(seen.values())


def versus_naive(repeats: int) -> list[list[str]]:
    rows = []
    shapes = [
        (64, 16, 32, 32),
        (64, 32, 16, 16),
        (64, 64, 8, 8),
        (16, 256, 56, 56),
        (16, 512, 28, 28),
        (16, 1024, 14, 14),
    ]
    for b, c, h, w in shapes:
        x = torch.randn(b, c, h, w, requires_grad=True)
        for name, ours, naive in (
            ("ham", plugattn.HAM(c), NaiveHAM(c, eca_kernel_size(c))),
            ("scsa", plugattn.SCSA(c), NaiveSCSA(c)),
        ):
            naive.load_state_dict(ours.state_dict())
            ours.train(), naive.train()
            with torch.no_grad():
                torch.testing.assert_close(ours.eval()(x), naive.eval()(x), rtol=1e-4, atol=1e-5)
            ours.train(), naive.train()
            t = interleaved(
                {"ours": lambda o=ours, x=x: fwd_bwd(o, x), "naive": lambda n=naive, x=x: fwd_bwd(n, x)},
                repeats,
            )
            mem_o, mem_n = saved_bytes(ours, x), saved_bytes(naive, x)
            rows.append(
                [
                    name,
                    f"{b}×{c}×{h}×{w}",
                    f"{t['naive']:.2f}",
                    f"{t['ours']:.2f}",
                    f"{t['naive'] / t['ours']:.2f}×",
                    f"{mem_n / mem_o:.2f}×",
                ]
            )
    return rows


def versus_none(repeats: int, batch: int) -> list[list[str]]:
    names = ["none", *plugattn.list_attention()]
    kwargs = {"ema": {"attn_kwargs": {"factor": 4}}, "sa": {"attn_kwargs": {"groups": 4}}}
    x = torch.randn(batch, 3, 32, 32)
    y = torch.randint(0, 10, (batch,))
    models, steps = {}, {}
    for n in names:
        torch.manual_seed(0)
        m = plugattn.create_model("resnet20", attention=None if n == "none" else n, **kwargs.get(n, {}))
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
        models[n] = m

        def step(m=m, opt=opt) -> None:
            loss = F.cross_entropy(m(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()

        steps[n] = step
    t = interleaved(steps, repeats)
    rows = []
    for n in names:
        params = sum(p.numel() for p in models[n].parameters())
        rows.append([n, f"{params:,}", f"{batch / t[n] * 1e3:.0f}", f"{t['none'] / t[n]:.2f}"])
    return rows


def memory_floor() -> list[list[str]]:
    rows = []
    x = torch.randn(8, 64, 16, 16, requires_grad=True)
    floor = x.numel() * x.element_size()
    for n in plugattn.list_attention():
        kw = {"groups": 16} if n == "sa" else {}
        m = plugattn.create_attention(n, 64, **kw).train()
        rows.append([n, f"{saved_bytes(m, x) / floor:.2f}×"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run, noisier)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmark_attention.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = 3 if args.quick else 15
    from plugattn.report import markdown_table

    conditions = (
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, CPU, "
        f"{args.threads} threads, "
        f"float32, train mode, median of {repeats} interleaved repeats, {time.strftime('%Y-%m-%d')}"
    )
    text = "# Attention modules: speed and memory, measured side by side\n\n"
    text += f"Produced by `python benchmarks/attention_speed.py`. Conditions: {conditions}.\n\n"
    text += "## HAM and SCSA against straightforward transcriptions (forward + backward)\n\n"
    text += (
        "Same state dict in both, outputs checked equal first. Speed-up = naive time / ours; "
        "memory = bytes kept for backward, naive / ours.\n\n"
    )
    text += markdown_table(
        ["module", "input B×C×H×W", "naive ms", "ours ms", "speed-up", "memory saved"], versus_naive(repeats)
    )
    text += "\n## In ResNet-20 (CIFAR, 32×32, batch 64): training throughput relative to no attention\n\n"
    text += (
        "One SGD step (forward, backward, update). EMA and SA with factor/groups 4 "
        "(fixed here so the rows stay comparable with earlier records; unset, they adapt to the width).\n\n"
    )
    text += markdown_table(
        ["attention", "params", "train img/s", "throughput vs none"], versus_none(repeats, 64)
    )
    text += (
        "\n## Memory kept for backward, relative to the floor (the module's input), "
        "C = 64, 16×16, batch 8\n\n"
    )
    text += markdown_table(["attention", "saved / input"], memory_floor())
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
