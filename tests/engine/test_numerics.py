"""amp/channels_last "auto": chosen by the hardware, printed, saved, kept on resume; tested with the
CPU's and the GPU's bf16 capability faked both ways."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

import plugattn
from plugattn import runs
from plugattn.engine.config import TrainConfig
from plugattn.engine.numerics import Numerics, resolve_numerics
from tests.runs.test_train_cli import cfg

CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)


@pytest.fixture
def cpu_bf16(monkeypatch):
    """Fake oneDNN's answer to "does this CPU run bf16 natively?"."""

    def fake(native: bool) -> None:
        monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: native)

    return fake


@pytest.mark.parametrize("native,amp", [(True, "bf16"), (False, "none")])
def test_auto_on_the_cpu_follows_native_bf16(cpu_bf16, native, amp):
    cpu_bf16(native)
    n = resolve_numerics("auto", "auto", CPU)
    assert (n.amp, n.channels_last) == (amp, False)
    assert ("has no native bf16" in n.reason) != native


@pytest.mark.parametrize("native,expected", [(True, ("bf16", True)), (False, ("none", False))])
def test_auto_on_cuda_follows_its_bf16_support(monkeypatch, native, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: native)
    n = resolve_numerics("auto", "auto", CUDA)
    assert (n.amp, n.channels_last) == expected


def test_fp16_is_never_chosen_and_explicit_values_are_kept(cpu_bf16, monkeypatch):
    cpu_bf16(True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_numerics("auto", "auto", CUDA).amp == "none"
    assert resolve_numerics("none", True, CPU) == Numerics("none", True, "amp=none as asked")
    assert resolve_numerics("fp16", "auto", CUDA).channels_last is True


def test_emulated_bf16_warns_once_per_request(cpu_bf16):
    cpu_bf16(False)
    with pytest.warns(RuntimeWarning, match=r"amp='bf16' on this CPU .* without native bf16") as record:
        assert resolve_numerics("bf16", False, CPU).amp == "bf16"
    assert len(record) == 1
    cpu_bf16(True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resolve_numerics("bf16", False, CPU)  # native: no warning


@pytest.mark.parametrize("field,value", [("amp", "fp8"), ("channels_last", "yes"), ("channels_last", 1)])
def test_bad_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=rf"{field} must be .*got {value!r}"):
        TrainConfig(**{field: value}).validate()


def test_the_default_recipe_is_auto():
    assert (TrainConfig().amp, TrainConfig().channels_last) == ("auto", "auto")


def test_runs_print_save_and_keep_their_numerics(cpu_bf16, tmp_path):
    run, lines = tmp_path / "run", []
    cpu_bf16(False)
    runs.train(cfg(epochs=2), run, stop_after=1, progress=False, log=lines.append)
    assert any(line.startswith("numerics: fp32, contiguous layout (this CPU") for line in lines)
    env = json.loads((run / "env.json").read_text())
    assert env["numerics"]["amp"] == "none" and env["native_bf16"] is False
    # Which path HAM and SCSA ran, printed and saved (native kernels or why not).
    kernels = env["kernels"]
    assert kernels == plugattn.attention.kernel_status() and set(kernels) == {"ham", "scsa", "pcsa"}
    assert f"kernels: ham {kernels['ham']}, scsa {kernels['scsa']}, pcsa {kernels['pcsa']}" in lines
    # What the allocator was told (the command keeps freed memory; a Python caller's process is left alone).
    assert env["memory"] == plugattn.engine.allocator_state() == "system allocator"
    assert "memory: system allocator" in lines
    assert torch.load(run / "last.pt", weights_only=True)["meta"]["numerics"]["amp"] == "none"
    assert "amp: auto" in (run / "config.yaml").read_text()  # the request, as given

    cpu_bf16(True)  # the same run resumed on a machine that would choose bf16 computes as it started
    lines.clear()
    runs.train(cfg(epochs=2), run, resume=True, progress=False, log=lines.append)
    assert any(line.startswith("numerics: fp32") and "as the run started" in line for line in lines)
    assert torch.load(run / "last.pt", weights_only=True)["meta"]["numerics"]["amp"] == "none"
