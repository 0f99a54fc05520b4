"""Ship: `plugattn export` writes ONNX, torch.export and TorchScript files that compute what the model
computes, or writes nothing and says why."""

from __future__ import annotations

import re

import pytest
import torch

import plugattn
from plugattn import cli
from plugattn.engine.config import resolve_config
from plugattn.export import ExportMismatch, export_model
from plugattn.runs import load_model, train

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "run"
    cfg = resolve_config(
        overrides={
            "data": "synthetic",
            "data_options": {"num_samples": 64, "image_size": 16, "num_classes": 3, "in_chans": 3},
            "model": "resnet20",
            "attention": "scsa",
            "epochs": 1,
            "batch_size": 16,
            "eval_batch_size": 32,
            "threads": 1,
        }
    )
    train(cfg, out, progress=False, log=lambda *_: None)
    return out


def onnx_logits(path, x: torch.Tensor) -> torch.Tensor:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])


def test_export_cli_onnx_dynamic_size_matches_the_model(run, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    assert (
        cli.main(["export", "--checkpoint", str(run), "--out", str(out), "--dynamic-batch", "--dynamic-size"])
        == 0
    )
    line = capsys.readouterr().out.strip()
    assert re.fullmatch(rf"{re.escape(str(out))} \(onnx\): max \|difference\| to eager \S+ on inputs "
                        r"1x3x16x16, 3x3x16x16, 1x3x24x32, 1x3x19x21", line), line  # fmt: skip
    model = load_model(run)
    x = torch.randn(4, 3, 28, 20)  # a size the check did not use
    with torch.no_grad():
        torch.testing.assert_close(onnx_logits(out, x), model(x), rtol=1e-4, atol=1e-4)


# SCSA trained at 16x16 has maps smaller than its 7x7 window in the last stages: torch.export guards the
# pooled size and a TorchScript trace bakes the window in, so with a dynamic height/width both are
# right only within the traced regime (docs/export.md); a dynamic batch is always fine.
@pytest.mark.parametrize(("suffix", "dynamic"), [(".pt2", "--dynamic-batch"), (".ts", "--dynamic-batch")])
def test_export_cli_torch_formats(run, tmp_path, capsys, suffix, dynamic):
    out = tmp_path / f"model{suffix}"
    assert cli.main(["export", "--checkpoint", str(run), "--out", str(out), dynamic]) == 0
    assert out.is_file() and "max |difference| to eager" in capsys.readouterr().out
    loaded = torch.export.load(out).module() if suffix == ".pt2" else torch.jit.load(str(out))
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), load_model(run)(x), rtol=1e-5, atol=1e-5)


def test_a_failed_check_writes_nothing_and_exits_non_zero(run, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    code = cli.main(["export", "--checkpoint", str(run), "--out", str(out), "--tolerance", "1e-30"])
    err = capsys.readouterr().err
    assert code == 1 and "failed check" in err and "nothing was written" in err
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temporary one


@pytest.mark.parametrize("suffix", [".pt2", ".ts"])
def test_an_export_wrong_at_a_promised_size_is_a_failed_check(run, tmp_path, capsys, suffix):
    """Whatever torch.export or a trace makes of SCSA at other sizes, the user gets exit 0 with a checked
    file, or exit 1 with one line saying what failed and no file: never a traceback or an unchecked file."""
    out = tmp_path / f"model{suffix}"
    code = cli.main(["export", "--checkpoint", str(run), "--out", str(out), "--dynamic-size"])
    err = capsys.readouterr().err.strip()
    if code == 0:
        assert out.is_file() and err == ""
    else:
        assert code == 1 and len(err.splitlines()) == 1, err
        assert re.search(r"(fails on an input of shape \[1, 3, \d+, \d+\]|differs from the eager model by)"
                         r".*nothing was written", err), err  # fmt: skip
        assert list(tmp_path.iterdir()) == []


def test_export_bad_input_is_one_line(run, tmp_path, capsys):
    cases = [
        (["--out", str(tmp_path / "m.zip")], r"must end in one of \.onnx, \.pt2, \.ts"),
        (["--out", str(tmp_path / "m.ts"), "--opset", "17"], r"--opset applies to ONNX only"),
        (["--out", str(tmp_path / "m.onnx"), "--tolerance", "0"], r"tolerance must lie in \(0, inf\)"),
        (["--out", str(tmp_path / "m.onnx"), "--batch", "0"], r"batch must be >= 1"),
    ]
    for argv, match in cases:
        assert cli.main(["export", "--checkpoint", str(run), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and re.search(match, err), err


class BakedScale(torch.nn.Module):
    """Reads a number out of its input in Python: a trace keeps the example's number as a constant, so
    the traced model is wrong on any other input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x.abs().max().item()


def test_export_model_raises_on_a_mismatch(tmp_path):
    with pytest.raises(ExportMismatch, match=r"differs from the eager model by .*nothing was written"):
        export_model(BakedScale(), (1, 3, 4, 4), tmp_path / "m.ts")
    assert list(tmp_path.iterdir()) == []


# The bar: every registered module inside ResNet-20 exports to ONNX, fixed and dynamic size,
# with onnxruntime's logits within 1e-4. HAM and SCSA run in CI; the others are slow (~30 s each).
@pytest.mark.parametrize(
    "name",
    [
        n if n in ("ham", "scsa") else pytest.param(n, marks=pytest.mark.slow)
        for n in plugattn.list_attention()
    ],
)
def test_every_module_exports_to_onnx_with_dynamic_sizes(name, tmp_path):
    torch.manual_seed(0)
    model = plugattn.create_model("resnet20", attention=name, num_classes=10).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # statistics away from (0, 1), so the check means something
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    result = export_model(model, (2, 3, 32, 32), tmp_path / "m.onnx", dynamic_batch=True, dynamic_size=True)
    assert result.max_error <= 1e-4
