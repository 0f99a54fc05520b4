"""Ship a trained model: ONNX, ``torch.export`` or TorchScript, each checked against the eager model.

The format follows the file name: ``.onnx`` (``torch.onnx.export`` with the dynamo exporter, checked
with onnxruntime), ``.pt2`` (``torch.export``, checked by loading it back), ``.ts`` (TorchScript by
tracing, checked by loading it back). Every export is run on random inputs of the shapes it promises
(the training size; with ``dynamic_batch`` another batch size; with ``dynamic_size`` other heights and
widths) and its largest difference from the eager model is reported; above ``tolerance`` the export is
refused and nothing is left at ``out``. ``plugattn export`` is the command line over it.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from plugattn._checks import check_float, check_int
from plugattn._files import replacing

__all__ = ["FORMATS", "ExportMismatch", "ExportResult", "export_checkpoint", "export_model"]

FORMATS = {".onnx": "onnx", ".pt2": "torch.export", ".ts": "torchscript"}


class ExportMismatch(RuntimeError):
    """The exported model's outputs differ from the eager model's by more than the tolerance."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    max_error: float  # largest |exported - eager| over every checked input
    shapes: tuple[tuple[int, ...], ...]  # the input shapes checked

    def describe(self) -> str:
        shapes = ", ".join("x".join(map(str, s)) for s in self.shapes)
        return (
            f"{self.path} ({self.format}): max |difference| to eager {self.max_error:.2e} on inputs {shapes}"
        )


def export_model(
    model: nn.Module,
    example_shape: Sequence[int],
    out: str | Path,
    *,
    opset: int | None = None,
    dynamic_batch: bool = False,
    dynamic_size: bool = False,
    tolerance: float = 1e-4,
    seed: int = 0,
) -> ExportResult:
    """Export ``model`` (put in eval mode) for inputs shaped ``example_shape`` — ``(B, C, H, W)``, or
    ``(B, C, L)`` for signal models and ``(B, C, D, H, W)`` for volumes — to ``out`` and check it; see
    the module docstring."""
    out = Path(out)
    fmt = FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise ValueError(f"--out {str(out)!r} must end in one of {', '.join(FORMATS)} (it names the format)")
    shape = tuple(check_int(f"example_shape[{i}]", v, minimum=1) for i, v in enumerate(example_shape))
    if len(shape) not in (3, 4, 5):
        raise ValueError(
            f"example_shape must be (B, C, H, W), (B, C, L) or (B, C, D, H, W), got {tuple(example_shape)}"
        )
    if opset is not None and fmt != "onnx":
        raise ValueError(f"--opset applies to ONNX only; {out.suffix} is {fmt}")
    check_float("tolerance", tolerance, low=0, low_open=True)
    model = model.eval()
    generator = torch.Generator().manual_seed(seed)
    # torch.export specialises a dimension of size 1 to the constant 1, so a dynamic batch is traced
    # with two examples whatever batch the checks use.
    example = torch.randn(max(shape[0], 2) if dynamic_batch else shape[0], *shape[1:], generator=generator)
    shapes = _shapes_to_check(shape, dynamic_batch, dynamic_size)
    inputs = [torch.randn(*s, generator=generator) for s in shapes]
    with replacing(out, suffix=out.suffix) as tmp:  # nothing at ``out`` unless the check passes
        # Traced without autograd: an inference artefact, and HAM's training path (custom autograd
        # functions) is not traceable by TorchScript.
        with torch.no_grad():
            run = _EXPORTERS[fmt](model, example, tmp, opset, dynamic_batch, dynamic_size)
        try:
            error = max(_difference(model, run, x) for x in inputs)
        except ExportMismatch as err:
            raise ExportMismatch(f"{err}; nothing was written to {str(out)!r}") from err.__cause__
        if not error <= tolerance:
            raise ExportMismatch(
                f"the {fmt} export differs from the eager model by {error:.2e} (> tolerance {tolerance:g}) "
                f"on inputs {[list(s) for s in shapes]}; nothing was written to {str(out)!r}"
            )
    return ExportResult(out, fmt, error, tuple(shapes))


def export_checkpoint(
    checkpoint: str | Path, out: str | Path, *, batch: int = 1, **options: Any
) -> ExportResult:
    """Export the model of a plugattn run (``DIR`` or ``DIR/last.pt``) at the image size it was trained
    on; ``options`` as :func:`export_model`."""
    from plugattn.engine.checkpoint import load_checkpoint
    from plugattn.runs.evaluate import checkpoint_file, input_shape, model_from_checkpoint

    ckpt = load_checkpoint(checkpoint_file(checkpoint))
    check_int("batch", batch, minimum=1)
    return export_model(model_from_checkpoint(ckpt), (batch, *input_shape(ckpt)), out, **options)


def _shapes_to_check(
    shape: tuple[int, ...], dynamic_batch: bool, dynamic_size: bool
) -> list[tuple[int, ...]]:
    b, c, *sides = shape
    shapes = [shape]
    if dynamic_batch:
        shapes.append((b + 2, c, *sides))
    if dynamic_size:
        # Each side grown by a different amount (a square-only export would pass a square check),
        # and not by multiples of the network's stride.
        for steps in ((8, 16, 24), (3, 5, 7)):
            shapes.append((b, c, *(s + d for s, d in zip(sides, steps[: len(sides)], strict=True))))
    return shapes


def _difference(model: nn.Module, run: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> float:
    with torch.no_grad():
        expected = model(x)
    try:
        got = run(x)
    except Exception as err:  # the exported artefact refuses a shape it was promised: a failed check
        first = next((ln.strip() for ln in str(err).splitlines() if ln.strip()), type(err).__name__)
        raise ExportMismatch(
            f"the exported model fails on an input of shape {list(x.shape)} ({first}); "
            "see docs/export.md for which module exports how"
        ) from err
    if got.shape != expected.shape:
        return float("inf")
    return (got.float() - expected.float()).abs().max().item()


def _dims(example: torch.Tensor, dynamic_batch: bool, dynamic_size: bool) -> dict[int, Any] | None:
    axes = ([0] if dynamic_batch else []) + (list(range(2, example.dim())) if dynamic_size else [])
    return {a: torch.export.Dim.DYNAMIC for a in axes} or None


def _onnx(model, example, path, opset, dynamic_batch, dynamic_size):
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise ImportError("an ONNX export is checked with onnxruntime: pip install 'plugattn[onnx]'") from err
    dims = _dims(example, dynamic_batch, dynamic_size)
    quiet = logging.getLogger("torch.onnx")  # "torchvision is not installed. Skipping torchvision::nms"
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (example,),
                str(path),
                dynamo=True,
                input_names=["image"],
                output_names=["logits"],
                dynamic_shapes=(dims,) if dims else None,
                opset_version=opset,
                external_data=False,  # one self-contained file, the weights inside
                verbose=False,
            )
    finally:
        quiet.setLevel(level)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"image": x.numpy()})[0])


def _torch_export(model, example, path, opset, dynamic_batch, dynamic_size):
    dims = _dims(example, dynamic_batch, dynamic_size)
    program = torch.export.export(model, (example,), dynamic_shapes=(dims,) if dims else None)
    torch.export.save(program, path)
    loaded = torch.export.load(path).module()
    return lambda x: loaded(x).detach()


def _torchscript(model, example, path, opset, dynamic_batch, dynamic_size):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notice; the check below is the test
        traced = torch.jit.trace(model, example, check_trace=False)
        torch.jit.save(traced, str(path))
        loaded = torch.jit.load(str(path))
    return lambda x: loaded(x).detach()


_EXPORTERS = {"onnx": _onnx, "torch.export": _torch_export, "torchscript": _torchscript}
