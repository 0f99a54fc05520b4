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
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch

from plugattn.attention import attention_entry, create_attention, list_attention
from plugattn.engine.config import list_presets, resolve_config


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (with where to find the usage), like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see: {self.prog} --help)\n")


def get_parser() -> argparse.ArgumentParser:
    """The argument parser (a factory, so it can be composed and tested)."""
    parser = _Parser(
        prog="plugattn", description="Plug-and-play attention modules for CNNs (HAM, SCSA, baselines)."
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of an error (for bug reports)"
    )
    sub = parser.add_subparsers(dest="command")
    ls = sub.add_parser("list", help="list the attention registry and check a forward pass of each module")
    ls.add_argument(
        "--channels", type=int, default=256, help="channels of the test feature map (default 256)"
    )
    ls.add_argument("--size", type=int, default=14, help="height and width of the test map (default 14)")
    ls.add_argument("--batch", type=int, default=2, help="batch size of the test input (default 2)")

    tr = sub.add_parser("train", help="train a model; writes metrics.jsonl, checkpoints, config, environment")
    _add_recipe_args(tr)
    tr.add_argument("--out", help="run directory (default: runs/<preset>-<model>-<attention>-seed<seed>)")
    tr.add_argument(
        "--resume", action="store_true", help="continue the run in --out exactly where it stopped"
    )
    tr.add_argument("--stop-after", type=int, help="stop after this many epochs in this invocation")

    ev = sub.add_parser(
        "eval", help="evaluate a checkpoint: top-1/top-5, per-class accuracy, confusion matrix"
    )
    ev.add_argument("--checkpoint", required=True, help="a run directory or its last.pt")
    ev.add_argument("--data", help="dataset (default: the one it was trained on)")
    ev.add_argument("--data-dir", help="dataset root (default: $PLUGATTN_DATA or the dataset's places)")
    ev.add_argument("--split", default="test", help="split to evaluate (default test)")
    ev.add_argument("--out", help="where to write the results (default: the checkpoint's directory)")
    ev.add_argument("--device", default="auto")

    cp = sub.add_parser("compare", help="attention modules x seeds under one recipe: mean ± std with costs")
    _add_recipe_args(cp, compare=True)
    cp.add_argument("--seeds", type=int, default=3, help="number of seeds, 0..N-1 (default 3)")
    cp.add_argument("--out", help="grid directory (default: runs/compare-<preset>-<model>-<data>)")

    bn = _add_bench_parser(sub)
    vz = _add_viz_parser(sub)
    ex = _add_export_parser(sub)
    for p in (ls, tr, ev, cp, bn, vz, ex):  # also after the command; SUPPRESS keeps a --debug given before it
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="full tracebacks")
    return parser


def _add_bench_parser(sub) -> argparse.ArgumentParser:
    bn = sub.add_parser(
        "bench", help="cost of attention modules or models side by side: FLOPs, latency, memory, floor"
    )
    bn.add_argument("--attention", default="ham,scsa", help="comma-separated modules (default ham,scsa)")
    what = bn.add_mutually_exclusive_group()
    what.add_argument(
        "--shape", help="measure the modules alone on a B,C,H,W feature map (default 32,64,56,56)"
    )
    what.add_argument("--model", help="measure this backbone with each module (and without attention)")
    bn.add_argument("--input-size", default="3,32,32", help="C,H,W of the model's input (default 3,32,32)")
    bn.add_argument("--batch", type=int, default=64, help="batch of the model's input (default 64)")
    bn.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    bn.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16 (default float32)")
    bn.add_argument("--channels-last", action="store_true", help="input and parameters in channels_last")
    bn.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    bn.add_argument("--warmup", type=int, default=3, help="untimed calls of each before timing (default 3)")
    bn.add_argument("--repeats", type=int, default=20, help="timed calls of each (default 20)")
    bn.add_argument("--csv", help="also write the rows (with the conditions) to this CSV file")
    bn.add_argument("--json", help="also write the report to this JSON file")
    return bn


def _add_viz_parser(sub) -> argparse.ArgumentParser:
    vz = sub.add_parser(
        "viz", help="pictures of what a trained model attends to: attention maps, channel weights, CAMs"
    )
    vz.add_argument(
        "--checkpoint", action="append", required=True,
        help="a run directory or its last.pt; give it twice to compare two models on the same images",
    )  # fmt: skip
    images = vz.add_mutually_exclusive_group(required=True)
    images.add_argument("--data", help="take images from this dataset (see --split, --n)")
    images.add_argument("--image", nargs="+", help="image files (PNG, JPEG, ...) to look at")
    vz.add_argument("--data-dir", help="dataset root (default: $PLUGATTN_DATA or the dataset's places)")
    vz.add_argument("--split", default="test", help="split to take images from (default test)")
    vz.add_argument("--n", type=int, default=8, help="images to look at (default 8)")
    vz.add_argument("--cam", default="gradcam,scorecam", help="CAM methods (default gradcam,scorecam)")
    vz.add_argument("--layer", help="the CAM's target layer (default: the last stage)")
    vz.add_argument("--out", required=True, help="directory for the PNG figures")
    return vz


def _add_export_parser(sub) -> argparse.ArgumentParser:
    ex = sub.add_parser(
        "export", help="ONNX, torch.export or TorchScript of a trained model, checked against it"
    )
    ex.add_argument("--checkpoint", required=True, help="a run directory or its last.pt")
    ex.add_argument(
        "--out", required=True, help="FILE.onnx, FILE.pt2 (torch.export) or FILE.ts (TorchScript)"
    )
    ex.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    ex.add_argument("--dynamic-batch", action="store_true", help="any batch size")
    ex.add_argument("--dynamic-size", action="store_true", help="any image height and width")
    ex.add_argument("--batch", type=int, default=1, help="batch of the example input (default 1)")
    ex.add_argument(
        "--tolerance", type=float, default=1e-4,
        help="largest difference to the eager model accepted (default 1e-4); above it nothing is written",
    )  # fmt: skip
    return ex


def _add_recipe_args(p: argparse.ArgumentParser, compare: bool = False) -> None:
    p.add_argument("--preset", help=f"recipe preset: {', '.join(list_presets())} (default fmnist-cpu)")
    p.add_argument("--config", help="a YAML file of config fields (applied after the preset)")
    p.add_argument("--model", help="backbone (plugattn.list_models())")
    if compare:
        p.add_argument("--attention", required=True, help="comma-separated modules, 'none' for the baseline")
    else:
        p.add_argument("--attention", help="attention module (plugattn.list_attention()) or 'none'")
    p.add_argument("--data", help="dataset (plugattn.data.list_datasets())")
    p.add_argument("--data-dir", help="dataset root (default: $PLUGATTN_DATA or the dataset's places)")
    p.add_argument("--download", action="store_true", default=None, help="download the dataset if absent")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--amp", choices=["auto", "none", "bf16", "fp16"])
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--workers", type=int, dest="num_workers", help="decoding worker processes")
    p.add_argument("--threads", type=int, help="torch intra-op threads")
    p.add_argument(
        "--set", action="append", default=[], metavar="FIELD=VALUE", help="any config field (YAML value)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (epoch lines only)")


RECIPE_FLAGS = ("model", "data", "data_dir", "download", "epochs", "batch_size", "lr", "seed", "amp",
                "channels_last", "compile", "device", "num_workers", "threads")  # fmt: skip


def _overrides(args: argparse.Namespace, *, with_attention: bool) -> dict[str, Any]:
    import yaml

    out = {k: getattr(args, k) for k in RECIPE_FLAGS}
    if with_attention:
        out["attention"] = args.attention
    for item in args.set:
        if "=" not in item:
            raise ValueError(f"--set expects FIELD=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            reason = str(err).splitlines()[0]
            raise ValueError(f"--set {item!r}: the value is not valid YAML ({reason})") from err
    return out


def _config(args: argparse.Namespace, *, with_attention: bool):
    preset = args.preset if args.preset or args.config else "fmnist-cpu"
    return resolve_config(preset, args.config, _overrides(args, with_attention=with_attention)), preset


def _default_name(cfg, preset: str | None) -> str:
    return f"{preset or 'custom'}-{cfg.model}-{cfg.attention or 'none'}-seed{cfg.seed}"


def cmd_train(args: argparse.Namespace) -> int:
    from plugattn import runs

    if args.stop_after is not None and args.stop_after < 1:
        raise ValueError(f"--stop-after must be >= 1, got {args.stop_after}")
    cfg, preset = _config(args, with_attention=True)
    out = runs.check_output_dir(args.out if args.out else Path("runs") / _default_name(cfg, preset))
    last = runs.train(cfg, out, resume=args.resume, stop_after=args.stop_after, progress=not args.no_progress)
    if last:
        print(f"{out}: epoch {last['epoch']}/{cfg.epochs}, test top-1 {last['test_top1']:.2f}%")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from plugattn import runs

    r = runs.evaluate_checkpoint(
        args.checkpoint,
        data=args.data,
        data_dir=args.data_dir,
        split=args.split,
        out=args.out,
        device=args.device,
    )
    print(
        f"{r['data']}/{r['split']}: top-1 {r['top1']:.2f}%  top-5 {r['top5']:.2f}%  ({r['samples']} images)"
    )
    for name, acc in r["per_class"].items():
        print(f"  {name:>20}  {acc:6.2f}%")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from plugattn.runs import check_output_dir, compare

    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    attentions = [a.strip().lower() for a in args.attention.split(",") if a.strip()]
    for a in attentions:
        if a != "none":
            attention_entry(a)  # unknown names fail before any training
    repeated = sorted({a for a in attentions if attentions.count(a) > 1})
    if repeated:
        raise ValueError(f"--attention lists {', '.join(repeated)} more than once; name each module once")
    cfg, preset = _config(args, with_attention=False)
    out = (
        Path(args.out) if args.out else Path("runs") / f"compare-{preset or 'custom'}-{cfg.model}-{cfg.data}"
    )
    check_output_dir(out)
    compare(cfg, attentions, list(range(args.seeds)), out, progress=not args.no_progress)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from plugattn.benchmark import bench

    report = bench(
        args.attention,
        shape=None if args.model else (args.shape or "32,64,56,56"),
        model=args.model,
        input_size=args.input_size,
        batch=args.batch,
        device=args.device,
        dtype=args.dtype,
        channels_last=args.channels_last,
        threads=args.threads,
        warmup=args.warmup,
        repeats=args.repeats,
    )
    for path in (args.csv, args.json):
        if path and Path(path).is_dir():
            raise ValueError(f"--csv/--json must name a file, got the directory {path!r}")
    print(report.table())
    if args.csv:
        print(f"wrote {report.to_csv(args.csv)}")
    if args.json:
        print(f"wrote {report.to_json(args.json)}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from plugattn.export import ExportMismatch, export_checkpoint

    try:
        result = export_checkpoint(
            args.checkpoint,
            args.out,
            batch=args.batch,
            opset=args.opset,
            dynamic_batch=args.dynamic_batch,
            dynamic_size=args.dynamic_size,
            tolerance=args.tolerance,
        )
    except ExportMismatch as err:
        print(f"plugattn export: failed check: {err}", file=sys.stderr)
        return 1
    print(result.describe())
    return 0


def cmd_viz(args: argparse.Namespace) -> int:
    from plugattn.viz import visualise

    if args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    written = visualise(
        args.checkpoint,
        args.out,
        data=args.data,
        data_dir=args.data_dir,
        split=args.split,
        n=args.n,
        images=args.image,
        cams=[c.strip() for c in args.cam.split(",") if c.strip()],
        layer=args.layer,
    )
    for path in written:
        print(path)
    return 0


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
    try:
        if command == "list":
            channels = getattr(args, "channels", 256)
            size = getattr(args, "size", 14)
            batch = getattr(args, "batch", 2)
            for name, value in (("channels", channels), ("size", size), ("batch", batch)):
                _check_positive(parser, name, value)
            return 1 if cmd_list(channels, size, batch) else 0
        commands = {
            "train": cmd_train,
            "eval": cmd_eval,
            "compare": cmd_compare,
            "bench": cmd_bench,
            "viz": cmd_viz,
            "export": cmd_export,
        }
        return commands[command](args)
    except (ValueError, OSError, FloatingPointError) as err:
        # The user's input was wrong, or the data, or the place asked to write to: one clear line.
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
