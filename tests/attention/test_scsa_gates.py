"""SCSA's gates on the native training path as one C pass each (plugattn/attention/scsa_gates.py), held to
formulations written here in float64 torch operations, forward and backward, and to the module's own
layers where a hook has to see them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import plugattn
from plugattn.attention import scsa_fast, scsa_gates
from tests.attention.test_matrix import randomize

pytestmark = pytest.mark.skipif(
    not scsa_fast.available(), reason=f"SCSA's kernels are not built here: {scsa_fast.status()}"
)


def _sequence(b: int, c: int, n: int, rows_first: bool) -> torch.Tensor:
    """A (B, C, n) sequence, as the means' kernel gives it under a channels-last map if rows_first."""
    seq = torch.randn(b, n, c).transpose(1, 2) if rows_first else torch.randn(b, c, n)
    return seq.requires_grad_()


def _smsa_formulation(seq, weight, bias, gamma, beta, eps):
    """σ(GroupNorm(4)(depthwise conv1d(seq))) in float64, the conv zero-padded to the same length."""
    k = weight.shape[-1]
    s = F.conv1d(seq, weight, bias, padding=(k - 1) // 2, groups=seq.shape[1])
    return torch.sigmoid(F.group_norm(s, 4, gamma, beta, eps))


@pytest.mark.parametrize("rows_first", [True, False], ids=["rows-first", "contiguous"])
@pytest.mark.parametrize(
    "b,c,h,w,k,bias",
    [(5, 16, 8, 8, 9, True), (3, 32, 7, 12, 9, True), (4, 8, 5, 3, 7, False), (2, 4, 1, 6, 9, True),
     (3, 64, 28, 2, 3, True), (2, 12, 4, 4, 1, False)],
    ids=str,
)  # fmt: skip
def test_smsa_gates_equal_the_conv_norm_and_sigmoid(b, c, h, w, k, bias, rows_first):
    torch.manual_seed(0)
    x_h, x_w = _sequence(b, c, h, rows_first), _sequence(b, c, w, rows_first)
    weight = torch.randn(c, 1, k, requires_grad=True)
    bias_t = torch.randn(c, requires_grad=True) if bias else None
    norms = [torch.nn.GroupNorm(4, c, eps=eps) for eps in (1e-5, 1e-3)]
    for n in norms:
        with torch.no_grad():
            n.weight.normal_()
            n.bias.normal_()
    a_h, a_w = scsa_gates.smsa_gates(x_h, x_w, weight, bias_t, norms)
    assert a_h.shape == (b, c, h) and a_w.shape == (b, c, w)
    assert a_h.stride() == x_h.stride()  # in the layout the passes over the map read
    probe_h, probe_w = torch.randn(b, c, h), torch.randn(b, c, w)
    leaves = [x_h, x_w, weight] + ([bias_t] if bias else []) + [p for n in norms for p in (n.weight, n.bias)]
    grads = torch.autograd.grad((a_h * probe_h).sum() + (a_w * probe_w).sum(), leaves)

    ref = [t.detach().double().requires_grad_() for t in leaves]
    rx_h, rx_w, rweight = ref[:3]
    rbias = ref[3] if bias else None
    rnorm = ref[-4:]
    r_h = _smsa_formulation(rx_h, rweight, rbias, rnorm[0], rnorm[1], 1e-5)
    r_w = _smsa_formulation(rx_w, rweight, rbias, rnorm[2], rnorm[3], 1e-3)
    ref_grads = torch.autograd.grad((r_h * probe_h.double()).sum() + (r_w * probe_w.double()).sum(), ref)
    torch.testing.assert_close(a_h.double(), r_h, rtol=0, atol=1e-6)
    torch.testing.assert_close(a_w.double(), r_w, rtol=0, atol=1e-6)
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def _pcsa_formulation(y, gamma, beta, qkv, heads, eps):
    """σ(softmax(q kᵀ / √d) · mean_N(v)) per head in float64, q, k, v per-channel scales of GN_1(y)."""
    b, c = y.shape[:2]
    t = F.group_norm(y, 1, gamma, beta, eps).reshape(b, c, -1)  # (B, C, N)
    q, k, v = ((t * wt[:, None] + (0 if bs is None else bs[:, None])) for wt, bs in qkv)
    d = c // heads
    q, k = q.reshape(b, heads, d, -1), k.reshape(b, heads, d, -1)
    v = v.mean(dim=2).reshape(b, heads, d, 1)
    o = torch.softmax(q @ k.transpose(-1, -2) / d**0.5, dim=-1) @ v
    return torch.sigmoid(o.reshape(b, c, 1, 1))


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last], ids=["contiguous", "cl"])
@pytest.mark.parametrize(
    "b,c,hw,heads,bias",
    [(5, 16, (4, 4), 1, True), (3, 32, (1, 1), 1, False), (4, 64, (2, 2), 4, True), (2, 8, (3, 2), 2, False),
     (2, 128, (4, 1), 8, True)],
    ids=str,
)  # fmt: skip
def test_pcsa_gate_equals_the_norm_attention_and_sigmoid(b, c, hw, heads, bias, layout):
    torch.manual_seed(0)
    m = plugattn.SCSA(c, head_num=heads, qkv_bias=bias)
    for p in m.parameters():
        with torch.no_grad():
            p.normal_()
    y = torch.randn(b, c, *hw).contiguous(memory_format=layout).requires_grad_()
    a = scsa_gates.pcsa_gate(y, m.norm, (m.q, m.k, m.v), heads, (c // heads) ** -0.5)
    assert a.shape == (b, c, 1, 1)
    probe = torch.randn(b, c, 1, 1)
    leaves = [y, m.norm.weight, m.norm.bias] + [p for conv in (m.q, m.k, m.v) for p in conv.parameters()]
    grads = torch.autograd.grad((a * probe).sum(), leaves)

    ref = [t.detach().double().requires_grad_() for t in leaves]
    per_conv = 2 if bias else 1
    qkv = [(ref[3 + i * per_conv].reshape(c), ref[4 + i * per_conv] if bias else None) for i in range(3)]
    r = _pcsa_formulation(ref[0], ref[1], ref[2], qkv, heads, m.norm.eps)
    ref_grads = torch.autograd.grad((r * probe.double()).sum(), ref)
    torch.testing.assert_close(a.double(), r, rtol=0, atol=1e-6)
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_the_parameter_gradients_are_the_same_at_every_call():
    """Summed in a fixed order (per thread, in double): two backward passes give the same bits."""
    torch.manual_seed(0)
    m = randomize(plugattn.SCSA(32)).train()
    x = torch.randn(6, 32, 10, 10).contiguous(memory_format=torch.channels_last)
    grads = []
    for _ in range(2):
        m.zero_grad(set_to_none=True)
        m(x).square().sum().backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters()})
    for name in grads[0]:
        assert torch.equal(grads[0][name], grads[1][name]), name


@pytest.mark.parametrize("part", ["norm_h", "norm_w", "spatial.gate", "norm", "channel.gate"])
def test_a_hook_on_a_part_sees_its_call_and_the_result_is_the_same(part):
    """A hook on a layer the fused gates stand in for makes the module call that layer, with the same
    result."""
    torch.manual_seed(0)
    m = randomize(plugattn.SCSA(16)).train()
    x = torch.randn(3, 16, 9, 9)
    results, calls = [], []
    for hooked in (False, True):
        xi = x.clone().requires_grad_()
        layer = m.get_submodule(part)
        handle = layer.register_forward_hook(lambda *args: calls.append(1)) if hooked else None
        y = m(xi)
        y.square().sum().backward()
        results.append((y.detach(), xi.grad))
        if handle is not None:
            handle.remove()
            assert calls, f"the hook on {part} did not fire"
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-4, atol=1e-6)


def test_a_value_that_is_not_finite_reaches_the_gates_as_torch_sends_it():
    """A NaN in a mean spreads through its group's norm to NaN gates, as torch's layers give them."""
    torch.manual_seed(0)
    x_h, x_w = torch.randn(2, 8, 5), torch.randn(2, 8, 6)
    x_h[0, 1, 2] = float("nan")
    weight, bias = torch.randn(8, 1, 3), torch.randn(8)
    norms = [torch.nn.GroupNorm(4, 8) for _ in range(2)]
    a_h, a_w = scsa_gates.smsa_gates(x_h, x_w, weight, bias, norms)
    r_h = _smsa_formulation(x_h.double(), weight.double(), bias.double(), None, None, 1e-5)
    r_w = _smsa_formulation(x_w.double(), weight.double(), bias.double(), None, None, 1e-5)
    assert r_h.isnan().any() and torch.equal(a_h.isnan(), r_h.isnan())
    torch.testing.assert_close(a_h.double().nan_to_num(), r_h.nan_to_num(), rtol=0, atol=1e-6)
    torch.testing.assert_close(a_w.double(), r_w, rtol=0, atol=1e-6)
