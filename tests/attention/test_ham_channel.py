"""HAM's channel map on the native path as one C call (plugattn/attention/ham_channel.py), held to the
formulation written here in float64 torch operations, forward and backward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import plugattn
from plugattn.attention import ham_channel, ham_fast

pytestmark = pytest.mark.skipif(not ham_fast.available(), reason=f"not built here: {ham_fast.status()}")


def _formulation(f_avg, f_max, weight, alpha, beta):
    """σ(conv1d(½(f_avg + f_max) + α·f_avg + β·f_max)) in float64, zero padding k // 2, no bias."""
    f_add = 0.5 * (f_avg + f_max)
    if alpha is not None:
        f_add = f_add + alpha * f_avg + beta * f_max
    k = weight.shape[-1]
    return torch.sigmoid(F.conv1d(f_add.unsqueeze(1), weight, padding=k // 2).squeeze(1))


@pytest.mark.parametrize("adaptive", [True, False], ids=["adaptive", "plain"])
@pytest.mark.parametrize("b,c,k", [(5, 16, 3), (3, 64, 5), (2, 7, 7), (4, 3, 5), (2, 2048, 9), (3, 10, 1)])
def test_the_channel_map_equals_the_mix_conv_and_sigmoid(b, c, k, adaptive):
    torch.manual_seed(0)
    f_avg = torch.randn(b, c, requires_grad=True)
    f_max = (torch.randn(b, c) * 3).requires_grad_()
    weight = torch.randn(1, 1, k, requires_grad=True)
    alpha = torch.tensor([0.3], requires_grad=True) if adaptive else None
    beta = torch.tensor([-0.7], requires_grad=True) if adaptive else None
    a = ham_channel.channel_map(f_avg, f_max, weight, alpha, beta)
    probe = torch.randn(b, c)
    leaves = [f_avg, f_max, weight] + ([alpha, beta] if adaptive else [])
    grads = torch.autograd.grad((a * probe).sum(), leaves)

    ref = [t.detach().double().requires_grad_() for t in leaves]
    r = _formulation(*ref[:3], *(ref[3:] if adaptive else (None, None)))
    ref_grads = torch.autograd.grad((r * probe.double()).sum(), ref)
    torch.testing.assert_close(a.double(), r, rtol=0, atol=1e-6)
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_a_value_that_is_not_finite_goes_through_as_torch_sends_it():
    f = torch.tensor([[float("nan"), 1.0, 2.0, 3.0, 4.0, 5.0], [1e30, -1e30, 0.0, 1.0, 2.0, float("inf")]])
    weight = torch.tensor([[[0.5, 1.0, -0.25]]])
    a = ham_channel.channel_map(f, f, weight, None, None)
    ref = _formulation(f.double(), f.double(), weight.double(), None, None)
    assert torch.equal(a.isnan(), ref.isnan())
    torch.testing.assert_close(a.double().nan_to_num(), ref.nan_to_num(), rtol=0, atol=1e-6)


def test_a_hook_on_the_channel_gate_still_sees_its_call():
    """capture_attention_maps hooks the channel gate: with a hook the mix runs as the module's layers."""
    torch.manual_seed(0)
    m = plugattn.HAM(16).train()
    x = torch.randn(2, 16, 9, 9, requires_grad=True)
    plain = m(x)
    with plugattn.capture_attention_maps(m) as maps:
        hooked = m(x)
    assert maps["channel.gate"][0].shape == (2, 16)
    torch.testing.assert_close(plain, hooked, rtol=1e-5, atol=1e-6)
