"""PCSA's channel attention as one C kernel (plugattn/attention/pcsa_fast.py) against a hand-computed case
and the float64 torch formulation ``softmax(q kᵀ · s) · v``, forward and all three gradients; and where
SCSA takes it."""

from __future__ import annotations

import math

import pytest
import torch

import plugattn
from plugattn.attention import pcsa_fast, scsa_fast
from tests.attention.test_matrix import randomize

pytestmark = pytest.mark.skipif(
    not pcsa_fast.available(), reason=f"PCSA's kernel is not built here: {pcsa_fast.status()}"
)


def attention(q, k, v, s):
    """The torch formulation, independent of the kernel: (R, D, N), (R, D, N), (R, D) → (R, D)."""
    return (torch.softmax(q @ k.transpose(1, 2) * s, dim=-1) @ v.unsqueeze(-1)).squeeze(-1)


def test_a_machine_with_a_c_compiler_builds_the_kernel():
    assert pcsa_fast.status().startswith("native"), pcsa_fast.status()


def test_a_hand_computed_case():
    # Two tokens, one position, s = 1: row i's logits are q_i · [0, ln 3], so row 0's softmax is
    # [1/4, 3/4] and row 1's (q = 2) is [1/10, 9/10]; with v = [4, 8]: 1 + 6 = 7 and 0.4 + 7.2 = 7.6.
    q = torch.tensor([[[1.0], [2.0]]])
    k = torch.tensor([[[0.0], [math.log(3.0)]]])
    v = torch.tensor([[4.0, 8.0]])
    o = pcsa_fast.channel_attention(q, k, v, 1.0)
    torch.testing.assert_close(o, torch.tensor([[7.0, 7.6]]), rtol=1e-6, atol=0)


@pytest.mark.parametrize(
    "rows,d,n,spread",
    [(3, 256, 4, 2.0), (5, 16, 16, 2.0), (4, 64, 1, 2.0), (2, 33, 5, 1.0), (2, 1, 3, 1.0), (3, 24, 2, 30.0)],
    ids=str,
)
def test_the_kernel_is_the_softmax_attention(rows, d, n, spread):
    """Values and gradients against float64; ``spread`` 30 gives logits hundreds apart, so most of a
    softmax row underflows (its exponentials below e^-87) and the rest is one or two tokens."""
    torch.manual_seed(0)
    q64, k64 = (torch.randn(rows, d, n, dtype=torch.float64) * spread for _ in range(2))
    v64 = torch.randn(rows, d, dtype=torch.float64)
    g = torch.randn(rows, d, dtype=torch.float64)
    s = d**-0.5
    ref_in = [t.clone().requires_grad_() for t in (q64, k64, v64)]
    ref = attention(*ref_in, s)
    ref_grads = torch.autograd.grad(ref, ref_in, g)
    ours_in = [t.float().requires_grad_() for t in (q64, k64, v64)]
    ours = pcsa_fast.channel_attention(*ours_in, s)
    grads = torch.autograd.grad(ours, ours_in, g.float())
    # float32 holds the logits to ~6e-8 of their size, and the backward recomputes them: the tolerance
    # grows with the spread
    tol = 5e-6 * spread
    torch.testing.assert_close(ours.double(), ref, rtol=tol, atol=tol * ref.abs().max().item())
    for name, ours_g, ref_g in zip("qkv", grads, ref_grads, strict=True):
        bound = tol * max(ref_g.abs().max().item(), 1e-6)
        torch.testing.assert_close(ours_g.double(), ref_g, rtol=tol, atol=bound, msg=name)


def _watched(m: plugattn.SCSA) -> plugattn.SCSA:
    """``m`` with a hook on its channel gate, which has to see its call: the gate's parts then run one by
    one (not fused as scsa_gates.pcsa_gate), the attention as this kernel."""
    m.channel.gate.register_forward_hook(lambda *args: None)
    return m


def test_scsa_takes_the_kernel_where_its_attention_has_no_active_dropout(monkeypatch):
    calls = []
    real = pcsa_fast.channel_attention
    monkeypatch.setattr(pcsa_fast, "channel_attention", lambda *a: calls.append(1) or real(*a))
    x = torch.randn(2, 16, 14, 14)
    assert scsa_fast.usable(x)
    randomize(plugattn.SCSA(16)).train()(x)  # the whole gate as one C pass (scsa_gates)
    assert calls == []
    _watched(randomize(plugattn.SCSA(16))).train()(x)
    assert calls == [1]
    m = _watched(randomize(plugattn.SCSA(16, attn_drop_ratio=0.1)))
    m.eval()(x)  # dropout is the identity in eval
    assert calls == [1, 1]
    torch.manual_seed(0)
    y = m.train()(x)  # dropout on the attention matrix: the torch formulation, which has the matrix
    assert calls == [1, 1] and y.shape == x.shape
    # 28x28 pools to 16 positions in 7x7 windows, where torch's matrix products are the faster way for
    # rows of fewer than 256 channels
    assert pcsa_fast.pays(4, 16) and pcsa_fast.pays(8, 16) and not pcsa_fast.pays(16, 64)
    assert pcsa_fast.pays(16, 256) and not pcsa_fast.pays(17, 1024)
    _watched(randomize(plugattn.SCSA(16))).train()(torch.randn(2, 16, 28, 28))
    assert calls == [1, 1]


def test_scsa_with_the_kernel_equals_scsa_without_it(monkeypatch):
    """The whole module, forward and backward, with the kernel and with torch's attention in its place."""
    torch.manual_seed(0)
    m = _watched(randomize(plugattn.SCSA(32, head_num=2))).train()
    x = torch.randn(3, 32, 14, 14).contiguous(memory_format=torch.channels_last)
    probe = torch.randn(x.shape)
    results = []
    for kernel in (True, False):
        m.zero_grad(set_to_none=True)
        xi = x.clone().requires_grad_()
        with monkeypatch.context() as patch:
            if not kernel:
                patch.setattr(pcsa_fast, "available", lambda: False)
            y = m(xi)
        (y * probe).sum().backward()
        results.append((y.detach(), xi.grad, {n: p.grad for n, p in m.named_parameters()}))
    (y, gx, gp), (y2, gx2, gp2) = results
    torch.testing.assert_close(y, y2, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gx, gx2, rtol=1e-4, atol=1e-6)
    for name in gp:
        torch.testing.assert_close(gp[name], gp2[name], rtol=1e-4, atol=1e-5, msg=name)
