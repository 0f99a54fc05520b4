"""SCSA's one-pass inference kernel (``scsa_eval`` in scsa_kernels.c, ``SCSA._forward_fused``): the same
function as the pure-torch path and the spec's independent formulation, and the cases it hands back."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import plugattn
from plugattn.attention import ham_fast, scsa_fast
from tests.attention.test_matrix import randomize
from tests.attention.test_scsa import scsa_reference

pytestmark = pytest.mark.skipif(
    not scsa_fast.available(), reason=f"SCSA's kernels are not built here: {scsa_fast.status()}"
)

LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
# ResNet-like stages, maps smaller than the window, windows that leave rows and columns out, global
# pooling, several heads, biases on q/k/v, other kernel sizes, many channels.
CASES = [
    ((4, 16, 28, 28), {}),
    ((3, 32, 15, 10), {}),
    ((2, 64, 14, 14), {"head_num": 2}),
    ((3, 16, 1, 1), {}),
    ((2, 32, 6, 9), {"window_size": -1}),
    ((2, 32, 16, 12), {"qkv_bias": True, "head_num": 4}),
    ((2, 24, 7, 7), {"group_kernel_sizes": (1, 3, 5, 11), "window_size": 2}),
    ((2, 8, 9, 20), {"window_size": 4}),
    ((2, 256, 14, 14), {}),
    ((1, 512, 3, 2), {"head_num": 8}),
]


def pure(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with ham_fast.native_kernels(False), torch.no_grad():
        return module(x)


def fused(module: nn.Module, x: torch.Tensor, monkeypatch) -> torch.Tensor:
    calls = []
    real = scsa_fast.evaluate
    monkeypatch.setattr(scsa_fast, "evaluate", lambda *a: calls.append(1) or real(*a))
    with torch.no_grad():
        y = module(x)
    assert calls == [1], "the call was expected to take the one-pass kernel"
    return y


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(("shape", "kwargs"), CASES, ids=str)
def test_the_one_pass_kernel_equals_the_pure_torch_path(shape, kwargs, layout, monkeypatch):
    torch.manual_seed(0)
    m = randomize(plugattn.SCSA(shape[1], **kwargs)).eval()
    x = torch.randn(shape).contiguous(memory_format=LAYOUTS[layout])
    y = fused(m, x, monkeypatch)
    torch.testing.assert_close(y, pure(m, x), rtol=1e-5, atol=1e-6)
    assert y.is_contiguous(memory_format=LAYOUTS[layout])


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(("shape", "kwargs"), CASES[:7], ids=str)
def test_the_one_pass_kernel_matches_the_independent_formulation(shape, kwargs, layout, monkeypatch):
    """The float64 formulation of spec/scsa.md (loops over groups, windows and heads), fed the float32
    input; in training mode too, which without dropout and without gradients is the same function."""
    torch.manual_seed(0)
    m = randomize(plugattn.SCSA(shape[1], **kwargs)).train()
    ref = randomize(plugattn.SCSA(shape[1], **kwargs)).double()
    ref.load_state_dict(m.state_dict())
    x = torch.randn(shape).contiguous(memory_format=LAYOUTS[layout])
    y_ref = scsa_reference(ref, x.double(), kwargs.get("window_size", 7), "avg_pool", "sigmoid")
    scale = y_ref.abs().max().item()
    torch.testing.assert_close(fused(m, x, monkeypatch).double(), y_ref, rtol=1e-5, atol=1e-6 * scale)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")], ids=str)
def test_a_sample_with_a_value_that_is_not_finite_is_handed_back(bad, layout, monkeypatch):
    torch.manual_seed(0)
    m = randomize(plugattn.SCSA(16)).eval()
    x = torch.randn(3, 16, 8, 8)
    x[1, 5, 2, 3] = bad
    x = x.contiguous(memory_format=LAYOUTS[layout])
    weight, bias = m._smsa_kernel()
    ones, zeros = torch.ones(16), torch.zeros(16)
    params = torch.cat([weight.detach().reshape(16, -1).t().reshape(-1), bias.detach()] + [ones, zeros] * 6)
    _, flags = scsa_fast.evaluate(x, params, weight.shape[-1], (1e-5,) * 3, (7, 7), 1, 0.25)
    assert flags.tolist() == [0, 1, 0]
    torch.testing.assert_close(fused(m, x, monkeypatch), pure(m, x), rtol=1e-5, atol=1e-6, equal_nan=True)


def test_a_hand_computed_sample():
    """C = 4 channels on a 1×1 map, window 1, one head, identity convs (kernel 1, no bias), norms with
    weight 1 and bias b: every GroupNorm(4) group is one value, normalised to 0, so a_h = a_w = σ(b_c);
    y = x·σ(b)², GN(1) over the 4 values, q = k = v = that (weights 1), softmax over the 4 channels."""
    x = torch.tensor([1.0, -2.0, 0.5, 3.0]).reshape(1, 4, 1, 1)
    b_h, b_w = torch.tensor([0.0, 1.0, -1.0, 2.0]), torch.tensor([0.5, 0.0, 0.0, -0.5])
    params = torch.cat(
        [torch.ones(4), torch.zeros(4), torch.ones(4), b_h, torch.ones(4), b_w, torch.ones(4), torch.zeros(4)]
        + [torch.ones(4), torch.zeros(4)] * 3
    )
    out, flags = scsa_fast.evaluate(x, params, 1, (1e-5, 1e-5, 1e-5), (1, 1), 1, 0.5)
    # The same steps by hand, in float64.
    xd, sh, sw = x.double().flatten(), torch.sigmoid(b_h.double()), torch.sigmoid(b_w.double())
    y = xd * sh * sw
    t = (y - y.mean()) / torch.sqrt(y.var(unbiased=False) + 1e-5)
    attn = torch.softmax(torch.outer(t, t) * 0.5, dim=1)
    expected = y * torch.sigmoid(attn @ t)
    assert flags.tolist() == [0]
    torch.testing.assert_close(out.double().flatten(), expected, rtol=1e-5, atol=1e-6)


def test_hooks_dropout_softmax_gates_and_replaced_layers_keep_the_step_by_step_path():
    torch.manual_seed(0)
    m = randomize(plugattn.SCSA(16)).eval()
    x = torch.randn(2, 16, 9, 9)
    assert m._fuses()
    with plugattn.capture_attention_maps(m) as maps:  # forward hooks on the gates
        assert not m._fuses()
        with torch.no_grad():
            y = m(x)
    assert len(maps["spatial.gate"]) == 2 and maps["channel.gate"][0].shape == (2, 16, 1, 1)
    torch.testing.assert_close(y, pure(m, x))
    handle = nn.modules.module.register_module_forward_hook(lambda *args: None)
    try:
        assert not m._fuses()  # a global hook sees every layer's call
    finally:
        handle.remove()
    dropping = randomize(plugattn.SCSA(16, attn_drop_ratio=0.1))
    assert not dropping.train()._fuses() and dropping.eval()._fuses()  # dropout acts in training only
    assert not plugattn.SCSA(16, gate_layer="softmax").eval()._fuses()
    m.norm = nn.GroupNorm(1, 16, affine=False)
    assert not m._fuses()
    m.norm = nn.GroupNorm(1, 16)
    m.norm_h = nn.GroupNorm(2, 16)
    assert not m._fuses()
    torch.testing.assert_close(m(x), pure(m, x))


def test_inference_mode_and_a_batch_smaller_than_the_threads(monkeypatch):
    torch.manual_seed(0)
    m = randomize(plugattn.SCSA(64)).eval()
    x = torch.randn(1, 64, 10, 10)
    with torch.inference_mode():
        y = fused(m, x, monkeypatch)
    torch.testing.assert_close(y, pure(m, x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("qkv_bias", [False, True])
def test_pack_lays_out_the_modules_tensors(qkv_bias):
    """``scsa_fast.pack`` against the layout built here by hand: each group's kernel centred in the
    largest kernel's taps, transposed to (k, C), then the C-vectors in order, zeros for absent biases."""
    torch.manual_seed(0)
    m = randomize(plugattn.SCSA(16, group_kernel_sizes=(1, 3, 5, 11), qkv_bias=qkv_bias))
    convs = [m.local_dwc, m.global_dwc_s, m.global_dwc_m, m.global_dwc_l]
    kernel = torch.zeros(11, 16)
    for i, conv in enumerate(convs):
        k = conv.kernel_size[0]
        kernel[(11 - k) // 2 : (11 - k) // 2 + k, 4 * i : 4 * i + 4] = conv.weight.detach().reshape(4, k).t()
    vectors = [torch.cat([conv.bias.detach() for conv in convs])]
    for norm in (m.norm_h, m.norm_w, m.norm):
        vectors += [norm.weight.detach(), norm.bias.detach()]
    for conv in (m.q, m.k, m.v):
        bias = torch.zeros(16) if conv.bias is None else conv.bias.detach()
        vectors += [conv.weight.detach().reshape(16), bias]
    expected = torch.cat([kernel.reshape(-1), *vectors])
    tensors = [conv.weight for conv in convs] + [conv.bias for conv in convs]
    for norm in (m.norm_h, m.norm_w, m.norm):
        tensors += [norm.weight, norm.bias]
    for conv in (m.q, m.k, m.v):
        tensors += [conv.weight, conv.bias]
    torch.testing.assert_close(scsa_fast.pack(tensors, (1, 3, 5, 11), 16), expected, rtol=0, atol=0)


def test_a_replaced_group_conv_of_another_shape_keeps_the_step_by_step_path():
    m = plugattn.SCSA(16).eval()
    assert m._fuses()
    m.global_dwc_s = nn.Conv1d(4, 4, 5, padding=2)  # not depthwise: weight (4, 4, 5)
    assert not m._fuses()
