"""The ``plugattn`` command's arguments: one parser factory, one builder per command."""

from __future__ import annotations

import argparse
from typing import NoReturn

from plugattn.engine.config import list_presets

__all__ = ["RECIPE_FLAGS", "get_parser"]


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
    _add_grid_args(cp)

    bn = _add_bench_parser(sub)
    vz = _add_viz_parser(sub)
    ex = _add_export_parser(sub)
    dense = [_add_dense_parser(sub, task) for task in ("detect", "segment")]
    # --debug also after the command; SUPPRESS keeps a --debug given before it
    for p in (ls, tr, ev, cp, bn, vz, ex, *dense):
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="full tracebacks")
    return parser


def _add_grid_args(cp: argparse.ArgumentParser) -> None:
    cp.add_argument("--baseline", help="module the others are compared with (default: none, when listed)")
    cp.add_argument("--jobs", type=int, default=1, help="cells at once in local processes (default 1)")
    cp.add_argument("--launcher", choices=["slurm", "local"], help="one submitit job per cell: Slurm, or "
                    "submitit's local executor")  # fmt: skip
    cp.add_argument("--partition", help="Slurm partition (with --launcher slurm)")
    cp.add_argument("--gpus-per-job", type=int, default=0, help="GPUs per cell's job (default 0)")
    cp.add_argument("--cpus-per-job", type=int, default=2, help="CPUs per cell's job (default 2)")
    cp.add_argument(
        "--timeout-min", type=int, default=1440, help="time limit of a job, minutes (default 1440)"
    )
    cp.add_argument(
        "--shard", help="K/N: run only the K-th of N shares of the cells (array jobs); no summary"
    )
    cp.add_argument("--summarise", action="store_true", help="only gather the finished runs of --out's grid")


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


def _add_dense_parser(sub, command: str) -> argparse.ArgumentParser:
    task = {"detect": "detection (Faster R-CNN, COCO mAP)", "segment": "segmentation (Semantic FPN, mIoU)"}
    dp = sub.add_parser(
        command, help=f"modules x seeds on Fashion-MNIST scenes: {task[command]}, paired by seed"
    )
    dp.add_argument("--model", default="resnet18", help="backbone with features_only (default resnet18)")
    dp.add_argument("--attention", default="none,scsa,ham", help="comma-separated (default none,scsa,ham)")
    dp.add_argument("--position", help="where in each block (default: each module's own place)")
    if command == "detect":
        dp.add_argument("--detector", choices=("faster_rcnn", "retinanet", "fcos"), default="faster_rcnn",
                        help="torchvision's detector around the backbone (default faster_rcnn)")  # fmt: skip
    dp.add_argument("--seeds", type=int, default=3, help="number of seeds, 0..N-1 (default 3)")
    dp.add_argument("--epochs", type=int, help="passes over the training scenes (default 3)")
    dp.add_argument("--batch-size", type=int, help="scenes per step (default 16)")
    dp.add_argument("--lr", type=float, help="AdamW learning rate, one-cycle schedule (default 1e-3)")
    dp.add_argument("--train-scenes", type=int, help="training scenes (default 640)")
    dp.add_argument("--test-scenes", type=int, help="test scenes, of test-split items (default 200)")
    dp.add_argument("--size", type=int, help="canvas side in pixels (default 128)")
    dp.add_argument("--data-dir", help="Fashion-MNIST's folder (default: $PLUGATTN_DATA or its places)")
    dp.add_argument("--download", action="store_true", help="download Fashion-MNIST if absent")
    dp.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    dp.add_argument("--out", help=f"grid directory (default runs/{command}-<model>)")
    return dp


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
    p.add_argument(
        "--preset",
        help=f"recipe preset: {', '.join(list_presets())} (default: the dataset's own, e.g. eegnet-blink "
        "for eeg-blink; else fmnist-cpu)",
    )
    p.add_argument("--config", help="a YAML file of config fields (applied after the preset)")
    p.add_argument("--model", help="backbone (plugattn.list_models())")
    if compare:
        p.add_argument("--attention", help="comma-separated modules, 'none' for the baseline (required)")
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
