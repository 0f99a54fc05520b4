"""The ``plugattn`` command line (also ``python -m plugattn``).

* ``plugattn train``: train a backbone + attention on a dataset with a recipe (default: ResNet-20 + HAM
  on Fashion-MNIST with the short CPU recipe); metrics, checkpoints, resumable.
* ``plugattn eval``: a checkpoint on a dataset: top-1/top-5, per-class accuracy, confusion matrix.
* ``plugattn compare``: attention modules × seeds under one recipe → mean ± std table with costs, plot.
* ``plugattn bench``: what attention modules (or models with them) cost, side by side: parameters,
  FLOPs with element-wise work, latency, peak memory, ratio to the memory floor, overhead.
* ``plugattn list`` (also plain ``plugattn``): the attention registry with each module's parameters and a
  forward-pass check.

Bad input ends with one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from plugattn.cli.commands import COMMANDS, cmd_list
from plugattn.cli.parser import get_parser
from plugattn.engine.memory import keep_freed_memory

__all__ = ["get_parser", "main"]


def _check_positive(parser: argparse.ArgumentParser, name: str, value: int) -> None:
    if value < 1:
        parser.error(f"--{name} must be >= 1, got {value}")


def run() -> int:
    """The process's entry point (the ``plugattn`` script, ``python -m plugattn``): the process is the
    command's own, so glibc keeps freed memory in it (:mod:`plugattn.engine.memory`: no page faults
    per training step) unless ``PLUGATTN_SYSTEM_ALLOCATOR=1``; then :func:`main`."""
    if os.environ.get("PLUGATTN_SYSTEM_ALLOCATOR", "0") != "1":
        keep_freed_memory()
    return main()


def main(argv: Sequence[str] | None = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    command = args.command or "list"
    try:
        if command == "list":
            channels = getattr(args, "channels", 256)
            size = getattr(args, "size", 14)
            batch = getattr(args, "batch", 2)
            for name, value in (("channels", channels), ("size", size), ("batch", batch)):
                _check_positive(parser, name, value)
            return 1 if cmd_list(channels, size, batch) else 0
        return COMMANDS[command](args)
    except (ValueError, OSError, FloatingPointError, ImportError) as err:
        # The user's input was wrong, or the data, or the place asked to write to, or an optional library
        # the command needs is missing (the message names its extra): one clear line.
        if args.debug:
            raise
        print(f"plugattn {command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"plugattn {command}: interrupted (a run resumes with --resume)", file=sys.stderr)
        return 130
    except Exception as err:  # a bug in plugattn (or torch): still one line, and how to report it
        if args.debug:
            raise
        print(
            f"plugattn {command}: internal error: {type(err).__name__}: {_one_line(err)} "
            "(this is a bug: please report it with the output of the same command run with --debug)",
            file=sys.stderr,
        )
        return 1


def _one_line(err: BaseException) -> str:
    """An error as one line: OS errors with their path, and nothing after a message's first line."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.strerror}: {err.filename!r}"
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return " ".join(lines) if len(lines) <= 3 else lines[0]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
