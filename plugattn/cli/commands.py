"""What each ``plugattn`` command does with its parsed arguments: it calls the rooms, and prints."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from plugattn._checks import check_threads
from plugattn.attention import attention_entry, create_attention, list_attention
from plugattn.cli.parser import RECIPE_FLAGS
from plugattn.engine.config import default_preset, resolve_config

__all__ = ["COMMANDS", "cmd_list"]


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
    preset = args.preset if args.preset or args.config else default_preset(getattr(args, "data", None))
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
    from plugattn.runs.compare import summarise_grid

    if args.summarise:
        if not args.out:
            raise ValueError("--summarise needs --out, the grid's directory")
        summarise_grid(args.out, baseline=args.baseline)
        return 0
    if not args.attention:
        raise ValueError("--attention is required: comma-separated modules, 'none' for the plain backbone")
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
    slurm, shard = _slurm(args), _shard(args.shard)
    result = compare(cfg, attentions, list(range(args.seeds)), out, progress=not args.no_progress,
                     baseline=args.baseline, jobs=args.jobs, slurm=slurm, shard=shard)  # fmt: skip
    if result["failed"]:
        print(
            f"plugattn compare: {len(result['failed'])} cell(s) failed (listed in the summary)",
            file=sys.stderr,
        )
        return 1
    return 0


def _slurm(args: argparse.Namespace):
    from plugattn.runs.launch import SlurmOptions

    if args.launcher is None:
        for flag in ("partition",):
            if getattr(args, flag):
                raise ValueError(f"--{flag} applies to --launcher slurm only")
        return None
    if args.jobs != 1:
        raise ValueError("--jobs and --launcher are two ways to run the cells; choose one")
    for name in ("gpus_per_job", "cpus_per_job", "timeout_min"):
        minimum = 0 if name == "gpus_per_job" else 1
        if getattr(args, name) < minimum:
            raise ValueError(f"--{name.replace('_', '-')} must be >= {minimum}, got {getattr(args, name)}")
    return SlurmOptions(
        cluster=args.launcher,
        partition=args.partition,
        gpus_per_job=args.gpus_per_job,
        cpus_per_job=args.cpus_per_job,
        timeout_min=args.timeout_min,
    )


def _shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.split("/")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"--shard must be K/N (e.g. 2/8), got {text!r}")
    k, n = int(parts[0]), int(parts[1])
    if not 1 <= k <= n:
        raise ValueError(f"--shard K/N needs 1 <= K <= N, got {text!r}")
    return k, n


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


def cmd_dense(args: argparse.Namespace) -> int:
    from plugattn.runs.dense import DenseRecipe, run_dense

    task = "detection" if args.command == "detect" else "segmentation"
    fields = ("epochs", "batch_size", "lr", "train_scenes", "test_scenes", "size")
    given = {k: getattr(args, k) for k in fields}
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    recipe = DenseRecipe(
        task, model=args.model, attentions=tuple(a.strip() for a in args.attention.split(",")),
        seeds=tuple(range(args.seeds)), position=args.position,
        **({"detector": args.detector} if task == "detection" else {}),
        **{k: v for k, v in given.items() if v is not None},
    )  # fmt: skip
    for name in recipe.attentions:
        if name != "none":
            attention_entry(name)  # an unknown module fails here, before any training
    if args.threads is not None:
        torch.set_num_threads(check_threads("--threads", args.threads))
    out = Path(args.out) if args.out else Path("runs") / f"{args.command}-{args.model}"
    run_dense(recipe, out, root=args.data_dir, download=args.download)
    print(f"{out}: summary.md, summary.json, results.csv")
    print((out / "summary.md").read_text())
    return 0


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


COMMANDS = {
    "train": cmd_train,
    "eval": cmd_eval,
    "compare": cmd_compare,
    "bench": cmd_bench,
    "viz": cmd_viz,
    "export": cmd_export,
    "detect": cmd_dense,
    "segment": cmd_dense,
}
