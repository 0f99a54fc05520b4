"""The speed targets of HAM and SCSA, each measured side by side in one run.

1. ResNet-20 + HAM / + SCSA training images/s relative to plain ResNet-20 (target >= 0.85), one SGD step
   at batch 256, at 1x28x28 and 3x32x32, each model in its best layout (contiguous or channels_last).
2. HAM and SCSA inference forward relative to the memory floor (target <= 2.0): the time to copy the
   input once, measured in the same loop (plugattn.benchmark.measure).
3. HAM and SCSA training step (forward + backward) against the straightforward transcriptions in
   benchmarks/naive.py (target >= 2x faster), after checking they compute the same.

Writes docs/benchmark_targets.md with the conditions and prints it. Numerics (``--dtype``): float32 (the
default); ``bf16-autocast``, the recipes' numerics where bf16 is native (weights float32, the forward
under CPU autocast, the modules' input a bf16 map as autocast's convolutions give it); ``bfloat16``, the
model cast to bf16. On a CPU with native bf16 record float32 and bf16-autocast.

    python benchmarks/targets.py [--quick] [--dtype float32|bf16-autocast|bfloat16]
"""

from __future__ import annotations

import argparse
import contextlib
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
from plugattn.benchmark.bench import _conditions, measure, time_interleaved  # noqa: E402
from plugattn.engine.memory import keep_freed_memory  # noqa: E402
from plugattn.report import markdown_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHAPES = [(128, 16, 32, 32), (128, 64, 8, 8), (32, 64, 56, 56), (32, 256, 14, 14)]
LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
# --dtype: (the dtype of weights and input, whether the forward runs under CPU bf16 autocast)
NUMERICS = {
    "float32": (torch.float32, False),
    "bf16-autocast": (torch.float32, True),
    "bfloat16": (torch.bfloat16, False),
}


def forward_numerics(autocast: bool) -> contextlib.AbstractContextManager:
    """The context a forward runs in: CPU bf16 autocast, or nothing."""
    return torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()


def map_dtype(dtype: torch.dtype, autocast: bool) -> torch.dtype:
    """The dtype of a module's input map: bf16 under autocast (what its convolutions output)."""
    return torch.bfloat16 if autocast else dtype


def median(times: list[float]) -> float:
    return statistics.median(times)


def training_ratios(repeats: int, dtype: torch.dtype, autocast: bool) -> list[list[str]]:
    rows = []
    for size in ((1, 28, 28), (3, 32, 32)):
        x = torch.randn(256, *size, dtype=dtype)
        y = torch.randint(0, 10, (256,))
        steps = {}
        for att in ("none", "ham", "scsa"):
            for layout, fmt in LAYOUTS.items():
                torch.manual_seed(0)
                m = plugattn.create_model(
                    "resnet20", attention=None if att == "none" else att, in_chans=size[0]
                )
                m = m.to(dtype=dtype, memory_format=fmt)
                opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
                xl = x.contiguous(memory_format=fmt)

                def step(m=m, opt=opt, xl=xl, y=y) -> None:
                    with forward_numerics(autocast):
                        loss = F.cross_entropy(m(xl).float(), y)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()

                steps[(att, layout)] = step
        t = time_interleaved(steps, warmup=1, repeats=repeats, sync=lambda: None)
        ips = {k: 256e3 / median(v) for k, v in t.items()}
        best = {a: max(LAYOUTS, key=lambda lay, a=a: ips[(a, lay)]) for a in ("none", "ham", "scsa")}
        for att in ("none", "ham", "scsa"):
            ratio = ips[(att, best[att])] / ips[("none", best["none"])]
            verdict = "" if att == "none" else ("met" if ratio >= 0.85 else "NOT met")
            rows.append(
                ["x".join(map(str, size)), att, f"{ips[(att, 'contiguous')]:.0f}",
                 f"{ips[(att, 'channels_last')]:.0f}", best[att], f"{ratio:.2f}", verdict]
            )  # fmt: skip
    return rows


def floor_ratios(repeats: int, dtype: torch.dtype, autocast: bool) -> list[list[str]]:
    rows = []
    for b, c, h, w in SHAPES:
        ratios = {}
        for layout, fmt in LAYOUTS.items():
            x = torch.randn(b, c, h, w, dtype=map_dtype(dtype, autocast)).contiguous(memory_format=fmt)
            mods = {
                n: plugattn.create_attention(n, c).to(dtype=dtype, memory_format=fmt) for n in ("ham", "scsa")
            }
            with forward_numerics(autocast):
                rows_measured = measure(mods, x, warmup=2, repeats=repeats, train=False)
            for r in rows_measured:
                ratios[(r["attention"], layout)] = (r["floor_ratio"], r["forward_ms"], r["floor_ms"])
        for n in ("ham", "scsa"):
            best = min(LAYOUTS, key=lambda lay, n=n: ratios[(n, lay)][0])
            ratio, fwd, floor = ratios[(n, best)]
            rows.append(
                [n, f"{b}×{c}×{h}×{w}", f"{ratios[(n, 'contiguous')][0]:.1f}",
                 f"{ratios[(n, 'channels_last')][0]:.1f}", best, f"{fwd:.2f}", f"{floor:.2f}",
                 "met" if ratio <= 2.0 else "NOT met"]
            )  # fmt: skip
    return rows


def versus_naive(repeats: int, dtype: torch.dtype, autocast: bool) -> list[list[str]]:
    rows = []
    for b, c, h, w in SHAPES:
        x = torch.randn(b, c, h, w, dtype=map_dtype(dtype, autocast), requires_grad=True)
        for name, ours, naive in (
            ("ham", plugattn.HAM(c), NaiveHAM(c, eca_kernel_size(c))),
            ("scsa", plugattn.SCSA(c), NaiveSCSA(c)),
        ):
            naive.load_state_dict(ours.state_dict())
            ours, naive = ours.to(dtype), naive.to(dtype)
            # Checked without autocast (under it the two round differently and HAM's top-k can flip):
            # in float32 where the weights are, else in the model's dtype.
            with torch.no_grad():
                tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 2e-2, "atol": 2e-2}
                xc = x.to(dtype)
                torch.testing.assert_close(ours.eval()(xc), naive.eval()(xc), **tol)
            ours.train(), naive.train()

            def train_step(module: torch.nn.Module, x: torch.Tensor = x) -> None:
                with forward_numerics(autocast):
                    y = module(x).float().sum()
                y.backward()

            t = time_interleaved(
                {"ours": lambda o=ours: train_step(o), "naive": lambda n=naive: train_step(n)},
                warmup=1, repeats=repeats, sync=lambda: None,
            )  # fmt: skip
            speedup = median(t["naive"]) / median(t["ours"])
            rows.append(
                [name, f"{b}×{c}×{h}×{w}", f"{median(t['naive']):.1f}", f"{median(t['ours']):.1f}",
                 f"{speedup:.2f}×", "met" if speedup >= 2.0 else "NOT met"]
            )  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run, noisier)")
    parser.add_argument("--dtype", default="float32", choices=list(NUMERICS))
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmark_targets.md"))
    parser.add_argument(
        "--system-allocator", action="store_true",
        help="leave glibc's allocator as it is (default: keep freed memory, as `plugattn train` does)",
    )  # fmt: skip
    args = parser.parse_args()
    dtype, autocast = NUMERICS[args.dtype]
    repeats = 3 if args.quick else 9
    memory = "system allocator" if args.system_allocator else keep_freed_memory()
    cond = {**_conditions(torch.device("cpu"), args.dtype, False, 0), "memory": memory}
    cond.pop("layout"), cond.pop("batch")
    conditions = ", ".join(f"{k} {v}" for k, v in cond.items())
    text = "# Speed targets of HAM and SCSA, measured side by side\n\n"
    text += (
        f"Produced by `python benchmarks/targets.py{' --quick' if args.quick else ''}"
        f"{'' if args.dtype == 'float32' else ' --dtype ' + args.dtype}` on {time.strftime('%Y-%m-%d')}. "
        f"Conditions: {conditions}; medians of {repeats} interleaved repeats. Only ratios are compared: "
        "each is taken between timings of the same run.\n\n"
    )
    text += (
        "## 1. ResNet-20 training throughput (one SGD step, batch 256): target >= 0.85× of no attention\n\n"
    )
    text += "Images/s in each layout; the ratio takes each model in its best layout.\n\n" + markdown_table(
        ["input", "attention", "img/s contiguous", "img/s channels_last", "best", "vs none", "target"],
        training_ratios(repeats, dtype, autocast),
    )
    text += "\n## 2. Inference forward against the memory floor: target <= 2.0×\n\n"
    text += (
        "Floor = the time to copy the input once (the bytes any `x · gate` must read and write), measured in "
        "the same loop. Ratio = forward time / floor.\n\n"
        + markdown_table(
            ["module", "input", "contiguous", "channels_last", "best", "fwd ms", "floor ms", "target"],
            floor_ratios(repeats, dtype, autocast),
        )
    )
    text += "\n## 3. Training step against the straightforward transcriptions: target >= 2×\n\n"
    text += (
        "Forward + backward of `benchmarks/naive.py` and of plugattn, same state dict, outputs checked equal "
        "first; contiguous layout.\n\n"
        + markdown_table(
            ["module", "input", "naive ms", "plugattn ms", "speed-up", "target"],
            versus_naive(repeats, dtype, autocast),
        )
    )
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
