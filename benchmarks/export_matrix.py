"""Which registered attention modules export how: the table of docs/export.md.

For every registered module inside ResNet-20 (3×32×32 input, 10 classes, BatchNorm statistics
randomised so the check is not trivial), five targets:

* ONNX at a fixed size and ONNX with a dynamic batch, height and width (``plugattn.export``'s dynamo
  exporter, checked with onnxruntime on the training size and on other sizes, tolerance 1e-4);
* ``torch.export`` with dynamic batch, height and width (saved, loaded back, checked on the same sizes);
* TorchScript by tracing (checked at other sizes too: a trace that baked a size in fails the check);
* ``torch.compile(fullgraph=True)`` (one graph, no breaks), run at two sizes.

Prints a Markdown table (✓, or the first line of the failure) with the conditions. Run:
``python benchmarks/export_matrix.py [module ...]``.
"""

from __future__ import annotations

import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import plugattn  # noqa: E402
from plugattn.export import export_model  # noqa: E402

TARGETS = (
    "ONNX fixed",
    "ONNX dynamic B/H/W",
    "torch.export dynamic",
    "TorchScript (trace)",
    "compile fullgraph",
)


def model_for(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = plugattn.create_model("resnet20", attention=name, num_classes=10)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def try_target(model: torch.nn.Module, target: str, tmp: Path) -> str:
    shape = (2, 3, 32, 32)
    try:
        if target == "ONNX fixed":
            r = export_model(model, shape, tmp / "m.onnx")
        elif target == "ONNX dynamic B/H/W":
            r = export_model(model, shape, tmp / "m.onnx", dynamic_batch=True, dynamic_size=True)
        elif target == "torch.export dynamic":
            r = export_model(model, shape, tmp / "m.pt2", dynamic_batch=True, dynamic_size=True)
        elif target == "TorchScript (trace)":
            r = export_model(model, shape, tmp / "m.ts", dynamic_batch=True, dynamic_size=True)
        else:
            torch._dynamo.reset()
            compiled = torch.compile(model, fullgraph=True)
            with torch.no_grad():
                for s in (shape, (3, 3, 40, 48)):
                    x = torch.randn(*s)
                    torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-4)
            return "✓"
        return f"✓ ({r.max_error:.0e})"
    except Exception as err:  # the table records why
        line = next((ln.strip() for ln in str(err).splitlines() if ln.strip()), "")
        return f"✗ {type(err).__name__}: {line[:90]}"


def main(names: list[str]) -> None:
    warnings.filterwarnings("ignore")
    print(f"torch {torch.__version__}, {platform.machine()}, {torch.backends.cpu.get_cpu_capability()}, "
          f"{torch.get_num_threads()} threads; {time.strftime('%Y-%m-%d')}\n")  # fmt: skip
    print("| module | " + " | ".join(TARGETS) + " |")
    print("|---|" + "---|" * len(TARGETS))
    for name in names:
        model = model_for(name)
        with tempfile.TemporaryDirectory() as tmp:
            cells = [try_target(model, t, Path(tmp)) for t in TARGETS]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or plugattn.list_attention())
