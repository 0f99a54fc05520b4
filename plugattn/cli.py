"""The ``plugattn`` command line.

``plugattn list`` (also plain ``plugattn``) prints every registered attention module with its
parameters at a given width and checks that a forward pass keeps the shape and stays finite.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch

from plugattn.attention import attention_entry, create_attention, list_attention


def get_parser() -> argparse.ArgumentParser:
    """The argument parser (a factory, so it can be composed and tested)."""
    parser = argparse.ArgumentParser(
        prog="plugattn", description="Plug-and-play attention modules for CNNs (HAM, SCSA, baselines)."
    )
    sub = parser.add_subparsers(dest="command")
    ls = sub.add_parser("list", help="list the attention registry and check a forward pass of each module")
    ls.add_argument(
        "--channels", type=int, default=256, help="channels of the test feature map (default 256)"
    )
    ls.add_argument("--size", type=int, default=14, help="height and width of the test map (default 14)")
    ls.add_argument("--batch", type=int, default=2, help="batch size of the test input (default 2)")
    return parser


def _check_positive(parser: argparse.ArgumentParser, name: str, value: int) -> None:
    if value < 1:
        parser.error(f"--{name} must be >= 1, got {value}")


def cmd_list(channels: int, size: int, batch: int) -> int:
    """Print the registry table; returns the number of modules whose check failed."""
    rows, notes = [], []
    failures = 0
    x = torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(0))
    for name in list_attention():
        entry = attention_entry(name)
        try:
            module = create_attention(name, channels).eval()
            params = sum(p.numel() for p in module.parameters())
            with torch.no_grad():
                y = module(x)
            ok = y.shape == x.shape and bool(torch.isfinite(y).all())
            status = "ok" if ok else "FAILED: shape or non-finite output"
        except ValueError as err:  # a module that cannot take this width says why
            params, ok, status = "-", True, "n/a (see below)"
            notes.append(f"{name}: {err}")
        failures += not ok
        rows.append((name, entry.cls.__name__, str(params), entry.position, status, entry.paper))
    header = ("name", "class", f"params@C={channels}", "position", "forward check", "paper")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    for note in notes:
        print(f"  {note}")
    print(
        f"\n{len(rows)} modules; forward check on a ({batch}, {channels}, {size}, {size}) input, "
        f"torch {torch.__version__}, {'cuda' if torch.cuda.is_available() else 'cpu'}"
    )
    return failures


def main(argv: Sequence[str] | None = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    command = args.command or "list"
    if command == "list":
        channels = getattr(args, "channels", 64)
        size = getattr(args, "size", 14)
        batch = getattr(args, "batch", 2)
        for name, value in (("channels", channels), ("size", size), ("batch", batch)):
            _check_positive(parser, name, value)
        return 1 if cmd_list(channels, size, batch) else 0
    parser.error(f"unknown command {command!r}")  # pragma: no cover - argparse rejects it first
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
