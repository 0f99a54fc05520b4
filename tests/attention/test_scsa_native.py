"""SCSA's native CPU path (fused C kernels, plugattn/attention/scsa_fast.py) against the independent
formulation of spec/scsa.md and against its pure-torch path, forward and backward."""

from __future__ import annotations

import pytest
import torch

import plugattn
from plugattn.attention import scsa_fast
from tests.attention.test_matrix import randomize
from tests.attention.test_scsa import CONFIGS, scsa_reference

pytestmark = pytest.mark.skipif(
    not scsa_fast.available(), reason=f"SCSA's kernels are not built here: {scsa_fast.status()}"
)

NATIVE_CONFIGS = [c for c in CONFIGS if c[2].get("down_sample_mode", "avg_pool") == "avg_pool"] + [
    (32, (2, 16, 12), {"qkv_bias": True, "head_num": 4}),  # q, k, v with biases on the native path
]
LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def test_a_machine_with_a_c_compiler_builds_the_kernels():
    assert scsa_fast.status().startswith("native"), scsa_fast.status()


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("channels,shape,kwargs", NATIVE_CONFIGS)
def test_native_path_matches_the_independent_formulation(channels, shape, kwargs, training, layout):
    torch.manual_seed(0)
    m = randomize(plugattn.SCSA(channels, **kwargs)).train(training)
    ref = randomize(plugattn.SCSA(channels, **kwargs)).double().train(training)
    ref.load_state_dict(m.state_dict())
    x = torch.randn(shape[0], channels, *shape[1:]).contiguous(memory_format=LAYOUTS[layout]).requires_grad_()
    assert scsa_fast.usable(x, *m.parameters())
    x_ref = x.detach().double().contiguous().requires_grad_()
    y = m(x)
    assert y.is_contiguous(memory_format=LAYOUTS[layout])
    options = (kwargs.get("window_size", 7), "avg_pool", kwargs.get("gate_layer", "sigmoid"))
    y_ref = scsa_reference(ref, x_ref, *options)
    scale = y_ref.abs().max()
    torch.testing.assert_close(y.double(), y_ref, rtol=1e-5, atol=1e-6 * scale.item())
    probe = torch.randn(x.shape, dtype=torch.float64)
    (y.double() * probe).sum().backward()
    (y_ref * probe).sum().backward()
    torch.testing.assert_close(
        x.grad.double(), x_ref.grad, rtol=1e-4, atol=1e-5 * x_ref.grad.abs().max().item()
    )
    for (name, p), p_ref in zip(m.named_parameters(), ref.parameters(), strict=True):
        tol = 1e-4 * max(p_ref.grad.abs().max().item(), 1e-3)
        torch.testing.assert_close(p.grad.double(), p_ref.grad, rtol=1e-4, atol=tol, msg=name)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", [(4, 16, 28, 28), (2, 64, 14, 14), (3, 32, 9, 20), (2, 16, 3, 3)], ids=str)
def test_native_path_equals_the_pure_torch_path(shape, training, layout, monkeypatch):
    torch.manual_seed(0)
    m = randomize(plugattn.SCSA(shape[1])).train(training)
    state = {k: v.clone() for k, v in m.state_dict().items()}
    x = torch.randn(shape).contiguous(memory_format=LAYOUTS[layout])
    probe = torch.randn(shape)
    results = []
    for native in (True, False):
        m.load_state_dict(state)
        m.zero_grad(set_to_none=True)
        xi = x.clone().requires_grad_()
        with monkeypatch.context() as patch:
            if not native:
                patch.setattr(scsa_fast, "usable", lambda *tensors: False)
            y = m(xi)
            (y * probe).sum().backward()
        results.append((y.detach(), xi.grad, {n: p.grad for n, p in m.named_parameters()}, m.state_dict()))
    (y, gx, gp, st), (y2, gx2, gp2, st2) = results
    torch.testing.assert_close(y, y2, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gx, gx2, rtol=1e-4, atol=1e-6)
    for name in gp:
        torch.testing.assert_close(gp[name], gp2[name], rtol=1e-4, atol=1e-5, msg=name)
    for name in st:
        torch.testing.assert_close(st[name], st2[name], msg=name)


def test_a_gradient_through_the_channel_gate_alone_reaches_the_input(monkeypatch):
    torch.manual_seed(0)
    m = randomize(plugattn.SCSA(16)).train()
    x = torch.randn(2, 16, 9, 9)
    grads = []
    for native in (True, False):
        xi = x.clone().requires_grad_()
        caught = []
        hook = m.channel.gate.register_forward_hook(lambda mod, args, out, caught=caught: caught.append(out))
        with monkeypatch.context() as patch:
            if not native:
                patch.setattr(scsa_fast, "usable", lambda *tensors: False)
            m(xi)
            grads.append(torch.autograd.grad((caught[0] ** 2).sum(), xi)[0])
        hook.remove()
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("case", ["max_pool", "signal", "volume", "float64", "bfloat16", "compile"])
def test_everything_else_takes_the_pure_torch_path(case, monkeypatch):
    """Where the kernels do not apply the module never calls them (they raise here) and still works."""

    def refuse(*args, **kwargs):
        raise AssertionError("the native path was taken")

    for name in ("output", "output_with_autograd", "evaluate"):
        monkeypatch.setattr(scsa_fast, name, refuse)
    x = torch.randn(2, 16, 8, 8)
    if case == "max_pool":
        m, inp = plugattn.SCSA(16, down_sample_mode="max_pool"), x
    elif case == "bfloat16":  # a model cast to bf16 (not autocast)
        m, inp = plugattn.SCSA(16).bfloat16(), x.bfloat16()
    elif case == "signal":
        m, inp = plugattn.SCSA(16, spatial_dims=1), torch.randn(2, 16, 30)
    elif case == "volume":
        m, inp = plugattn.SCSA(16, spatial_dims=3), torch.randn(2, 16, 4, 5, 6)
    elif case == "float64":
        m, inp = plugattn.SCSA(16).double(), x.double()
    else:
        m, inp = torch.compile(plugattn.SCSA(16), backend="eager", fullgraph=True), x
    assert m(inp).shape == inp.shape


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("length,k", [(28, 9), (7, 3), (3, 9), (1, 5), (16, 1)])
def test_the_depthwise_conv_kernel_equals_torchs_conv1d(length, k, bias):
    """SMSA's depthwise conv (Eq. 2) as a C loop against F.conv1d with zero padding, values and all
    three gradients, sequences shorter than the kernel included."""
    torch.manual_seed(0)
    seq = torch.randn(5, 12, length, requires_grad=True)
    weight = torch.randn(12, 1, k, requires_grad=True)
    b = torch.randn(12, requires_grad=True) if bias else None
    out = scsa_fast.depthwise_conv1d(seq, weight, b)
    ref = torch.nn.functional.conv1d(seq, weight, b, padding=k // 2, groups=12)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    probe = torch.randn(ref.shape)
    inputs = [seq, weight] + ([b] if bias else [])
    got = torch.autograd.grad((out * probe).sum(), inputs)
    want = torch.autograd.grad((ref * probe).sum(), inputs)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)
