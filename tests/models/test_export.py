"""Native and retrofitted models export to ONNX (onnxruntime parity), pickle and round-trip state dicts."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn

import plugattn
from tests.models import lookalikes as la
from tests.models.helpers import randomize_bn


def onnx_parity(model: nn.Module, x: torch.Tensor, path) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model.eval()
    torch.onnx.export(model, (x,), str(path), dynamo=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        ref = model(x)
    refs = ref if isinstance(ref, list) else [ref]
    assert len(outputs) == len(refs)
    for out, r in zip(outputs, refs, strict=True):
        torch.testing.assert_close(torch.from_numpy(out), r, rtol=1e-4, atol=1e-5)


def test_onnx_native_resnet20_ham(tmp_path):
    torch.manual_seed(0)
    model = randomize_bn(plugattn.create_model("resnet20", attention="ham"))
    onnx_parity(model, torch.randn(2, 3, 16, 16), tmp_path / "r20.onnx")


def test_onnx_retrofitted_torchvision_resnet18_scsa(tmp_path):
    torch.manual_seed(0)
    model = la.tv_resnet18(num_classes=10)
    plugattn.insert_attention(model, "scsa")
    onnx_parity(randomize_bn(model), torch.randn(1, 3, 32, 32), tmp_path / "tv18.onnx")


@pytest.mark.slow
def test_onnx_mobilenet_features(tmp_path):
    torch.manual_seed(0)
    model = randomize_bn(plugattn.create_model("mobilenet_v2", attention="scsa", features_only=True))
    onnx_parity(model, torch.randn(1, 3, 64, 64), tmp_path / "mnv2.onnx")


@pytest.mark.slow
def test_onnx_retrofitted_torchvision_mobilenet_v2_ham(tmp_path):
    torch.manual_seed(0)
    model = la.TVMobileNetV2(num_classes=10)
    plugattn.insert_attention(model, "ham")
    onnx_parity(randomize_bn(model), torch.randn(1, 3, 64, 64), tmp_path / "tvmnv2.onnx")


@pytest.mark.parametrize(
    "name,attention", [("resnet20", "ham"), ("mobilenet_v2", "scsa"), ("wrn16_8", "ham")]
)
def test_pickle_and_state_dict_round_trip(name, attention):
    torch.manual_seed(0)
    model = randomize_bn(plugattn.create_model(name, attention=attention)).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        torch.testing.assert_close(pickle.loads(pickle.dumps(model))(x), ref)
        torch.testing.assert_close(copy.deepcopy(model)(x), ref)
        torch.manual_seed(1)
        fresh = plugattn.create_model(name, attention=attention).eval()
        fresh.load_state_dict(model.state_dict())
        torch.testing.assert_close(fresh(x), ref)


def test_torch_compile_captures_one_graph():
    """The fixed branch order (a loop over names set at construction) and the retrofit wrappers trace
    without graph breaks."""
    native = plugattn.create_model("resnet20", attention="scsa").eval()
    retrofitted = la.tv_resnet18(num_classes=10)
    plugattn.insert_attention(retrofitted, "ham")
    plugattn.insert_attention(retrofitted, "scsa")
    x = torch.randn(2, 3, 16, 16)
    for model in (native, retrofitted.eval()):
        compiled = torch.compile(model, fullgraph=True, backend="eager")
        with torch.no_grad():
            torch.testing.assert_close(compiled(x), model(x))
