"""HAM's gates on the native path (Eq. 9: each group's BatchNorm, ReLU and sigmoid as one C pass,
``ham_spatial.gates``) against the module's own layers on the same conv output: the maps, every gradient,
and the running statistics, in both BatchNorm modes and their variants."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from plugattn.attention import ham_fast
from plugattn.attention.ham import HAMSpatial
from tests.attention.test_matrix import randomize

pytestmark = pytest.mark.skipif(
    not ham_fast.available(), reason=f"HAM's kernels are not built here: {ham_fast.status()}"
)

SHAPES = [(4, 9, 7), (3, 1, 1), (2, 28, 28), (1, 5, 3)]
VARIANTS = ["default", "eval", "no affine", "no running stats", "cumulative momentum"]


def _spatial(variant: str) -> HAMSpatial:
    sp = randomize(HAMSpatial(7))
    for name in ("norm_important", "norm_subimportant"):
        old = getattr(sp, name)
        if variant == "no affine":
            setattr(sp, name, nn.BatchNorm2d(1, affine=False))
        elif variant == "no running stats":
            setattr(sp, name, nn.BatchNorm2d(1, track_running_stats=False))
        elif variant == "cumulative momentum":
            setattr(sp, name, nn.BatchNorm2d(1, momentum=None))
        getattr(sp, name).load_state_dict(old.state_dict(), strict=False)
    return sp.train(variant != "eval")


def _run(sp: HAMSpatial, d1: torch.Tensor, d2: torch.Tensor, probe: torch.Tensor, calls: list[int]):
    d1, d2 = d1.clone().requires_grad_(), d2.clone().requires_grad_()
    out = sp(d1, d2)
    out.backward(probe)
    grads = {n: p.grad.clone() for n, p in sp.named_parameters()}
    return out.detach(), d1.grad, d2.grad, grads, copy.deepcopy(sp.state_dict()), len(calls)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_the_native_gates_equal_the_modules_layers(shape, variant, monkeypatch):
    b, h, w = shape
    torch.manual_seed(0)
    sp = _spatial(variant)
    d1, d2 = torch.randn(b, 2, h, w), torch.randn(b, 2, h, w)
    probe = torch.randn(b, 2, h, w)
    calls = []
    real = sp._fuses_gates
    monkeypatch.setattr(sp, "_fuses_gates", lambda s: bool(calls.append(1)) or real(s))
    torch_sp = copy.deepcopy(sp)
    monkeypatch.setattr(torch_sp, "_fuses_gates", lambda s: False)
    for step in range(2):  # twice: the running statistics move, and the second call uses what the first left
        ours, theirs = _run(sp, d1, d2, probe, calls), _run(torch_sp, d1, d2, probe, [])
        assert ours[-1] == step + 1 and real(torch.empty(2, b, h, w))  # the native gates ran
        torch.testing.assert_close(ours[0], theirs[0], rtol=1e-5, atol=2e-6)
        torch.testing.assert_close(ours[1], theirs[1], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(ours[2], theirs[2], rtol=1e-4, atol=1e-6)
        for name in theirs[3]:
            torch.testing.assert_close(ours[3][name], theirs[3][name], rtol=1e-4, atol=1e-5, msg=name)
        assert ours[4].keys() == theirs[4].keys()
        for name in theirs[4]:
            torch.testing.assert_close(ours[4][name], theirs[4][name], rtol=1e-5, atol=1e-7, msg=name)
        sp.zero_grad(), torch_sp.zero_grad()


def test_where_the_layers_must_see_their_call_or_differ_the_module_path_runs():
    torch.manual_seed(0)
    sp = randomize(HAMSpatial(7))
    s = torch.randn(2, 3, 5, 5)
    assert sp._fuses_gates(s)
    seen = []
    handle = sp.gate.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    assert not sp._fuses_gates(s)
    sp(torch.randn(3, 2, 5, 5), torch.randn(3, 2, 5, 5))
    assert seen == [torch.Size([3, 2, 5, 5])]
    handle.remove()
    sp.norm_important.eval()  # the two norms in different modes
    assert not sp._fuses_gates(s)
    sp.norm_important.train()
    sp.norm_subimportant = nn.BatchNorm2d(1, eps=1e-3)
    assert not sp._fuses_gates(s)
    sp.norm_subimportant = nn.BatchNorm2d(1)
    sp.gate = nn.Hardsigmoid()
    assert not sp._fuses_gates(s)
    sp.gate = nn.Sigmoid()
    assert sp._fuses_gates(s) and not sp._fuses_gates(torch.randn(2, 1, 1, 1))  # one value per group
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        sp(torch.randn(1, 2, 1, 1), torch.randn(1, 2, 1, 1))  # as nn.BatchNorm2d says it


def test_a_nan_stays_nan_as_torchs_relu_and_sigmoid_keep_it():
    torch.manual_seed(0)
    sp = randomize(HAMSpatial(7)).eval()
    d1, d2 = torch.randn(2, 2, 6, 6), torch.randn(2, 2, 6, 6)
    d1[1, 0, 3, 3] = float("nan")
    with torch.no_grad():
        ours = sp(d1, d2)
        sp.gate.register_forward_hook(lambda m, i, o: None)  # the module's layers from here
        theirs = sp(d1, d2)
    assert torch.isnan(ours).any()
    torch.testing.assert_close(ours, theirs, equal_nan=True, rtol=1e-5, atol=2e-6)
