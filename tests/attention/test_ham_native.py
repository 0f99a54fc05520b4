"""HAM's native CPU path (fused C kernels, plugattn/attention/ham_fast.py) against its pure-torch path
and against the independent formulation of spec/ham.md, forward and backward, in both layouts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import plugattn
from plugattn.attention import ham_fast
from tests.attention.test_ham import ham_reference
from tests.attention.test_matrix import randomize

pytestmark = pytest.mark.skipif(
    not ham_fast.available(), reason=f"HAM's kernels are not built here: {ham_fast.status()}"
)

# (2, 32, 6, 11): whole tiles of 16 positions and 16 channels in the channels-last passes, 2 positions left
SHAPES = [
    (4, 16, 8, 8), (3, 64, 7, 9), (2, 5, 13, 11), (2, 33, 17, 3), (3, 20, 1, 1), (2, 24, 40, 37),
    (2, 32, 6, 11),
]  # fmt: skip
LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


@pytest.fixture
def pure_torch(monkeypatch):
    """Run a call on the pure-torch path."""

    def run(fn):
        with monkeypatch.context() as m:
            m.setattr(ham_fast, "usable", lambda *tensors: False)
            return fn()

    return run


def test_a_machine_with_a_c_compiler_builds_the_kernels():
    assert ham_fast.status().startswith("native"), ham_fast.status()


def native_and_pure(module, x, probe, pure_torch):
    """Output, input gradient and parameter gradients on both paths (the module's state restored)."""
    state = {k: v.clone() for k, v in module.state_dict().items()}
    results = []
    for path in ("native", "pure"):
        module.load_state_dict(state)
        module.zero_grad(set_to_none=True)
        xi = x.detach().clone().requires_grad_()

        def run(xi=xi):
            y = module(xi)
            (y * probe).sum().backward()
            return y

        assert ham_fast.usable(xi, *module.parameters()) is True
        y = run() if path == "native" else pure_torch(run)
        results.append((y.detach(), xi.grad, {n: p.grad for n, p in module.named_parameters()}, y))
        results[-1] += ({k: v.clone() for k, v in module.state_dict().items()},)
    return results


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_native_path_equals_the_pure_torch_path(shape, training, layout, pure_torch):
    torch.manual_seed(0)
    m = randomize(plugattn.HAM(shape[1])).train(training)
    x = torch.randn(shape).contiguous(memory_format=LAYOUTS[layout])
    probe = torch.randn(shape)
    (y, gx, gp, y_raw, st), (y2, gx2, gp2, _, st2) = native_and_pure(m, x, probe, pure_torch)
    torch.testing.assert_close(y, y2, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gx, gx2, rtol=1e-4, atol=1e-5)
    for name in gp:
        torch.testing.assert_close(gp[name], gp2[name], rtol=1e-4, atol=1e-5, msg=name)
    for name in st:  # running statistics move alike
        torch.testing.assert_close(st[name], st2[name], rtol=1e-5, atol=1e-6, msg=name)
    # The output keeps the input's layout; so does the input gradient.
    assert y_raw.is_contiguous(memory_format=LAYOUTS[layout])
    assert gx.stride() == x.stride()


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_native_path_in_float32_matches_the_independent_formulation(training, layout):
    """The float64 formulation of the spec, fed the float32 input: agreement to float32 precision."""
    torch.manual_seed(0)
    m = randomize(plugattn.HAM(32)).train(training)
    ref = randomize(plugattn.HAM(32)).double().train(training)
    ref.load_state_dict(m.state_dict())
    x = torch.randn(3, 32, 9, 10).contiguous(memory_format=LAYOUTS[layout]).requires_grad_()
    x_ref = x.detach().double().requires_grad_()
    probe = torch.randn(x.shape, dtype=torch.float64)
    with plugattn.capture_attention_maps(m) as maps:
        y = m(x)
    y_ref, a_c, a_s1, a_s2 = ham_reference(ref, x_ref, training)
    torch.testing.assert_close(y.double(), y_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(maps["channel.gate"][0].double(), a_c.detach(), rtol=1e-5, atol=1e-6)
    spatial = torch.cat([a_s1, a_s2], dim=1).detach()
    torch.testing.assert_close(maps["spatial.gate"][0].double(), spatial, rtol=1e-5, atol=1e-6)
    (y.double() * probe).sum().backward()
    (y_ref * probe).sum().backward()
    torch.testing.assert_close(x.grad.double(), x_ref.grad, rtol=1e-4, atol=1e-5)
    for (name, p), p_ref in zip(m.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad.double(), p_ref.grad, rtol=1e-4, atol=1e-4, msg=name)


def test_ties_in_the_maxima_go_where_the_pure_path_sends_them(pure_torch):
    """After a ReLU most of a map is zero: the channel max of a row and the group maxima tie, and both
    paths must send the gradient to the same (first) position or channel."""
    torch.manual_seed(0)
    m = randomize(plugattn.HAM(16)).train()
    x = torch.relu(torch.randn(4, 16, 6, 6) - 1.0)
    x[0, 3] = 0.0  # a whole channel zero: every position ties for its max
    probe = torch.randn(x.shape)
    (y, gx, gp, _, _), (y2, gx2, gp2, _, _) = native_and_pure(m, x, probe, pure_torch)
    torch.testing.assert_close(y, y2, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gx, gx2, rtol=1e-4, atol=1e-5)
    for name in gp:
        torch.testing.assert_close(gp[name], gp2[name], rtol=1e-4, atol=1e-5, msg=name)


def test_gradients_to_the_parameters_alone_and_a_second_backward(pure_torch):
    torch.manual_seed(0)
    m = randomize(plugattn.HAM(16)).train()
    x = torch.randn(2, 16, 5, 5)  # no gradient wanted for the input
    y = m(x)
    y.sum().backward(retain_graph=True)
    first = [p.grad.clone() for p in m.parameters()]
    y.sum().backward()  # retain_graph: the second backward adds the same again
    for g1, p in zip(first, m.parameters(), strict=True):
        torch.testing.assert_close(p.grad, 2 * g1)
    m.zero_grad()
    pure_torch(lambda: m(x).sum().backward())
    for g1, p in zip(first, m.parameters(), strict=True):
        torch.testing.assert_close(p.grad, g1, rtol=1e-4, atol=1e-5)


def test_a_gradient_through_the_channel_map_alone_reaches_the_input(pure_torch):
    """The input gradient is gathered in the pooling's backward; it must also run when only the channel
    map (caught by its gate's hook) is differentiated."""
    torch.manual_seed(0)
    m = randomize(plugattn.HAM(16)).train()
    x = torch.randn(2, 16, 5, 5)
    grads = []
    for run in (lambda f: f(), pure_torch):
        xi = x.clone().requires_grad_()

        def step(xi=xi):
            caught = []
            hook = m.channel.gate.register_forward_hook(lambda mod, args, out: caught.append(out))
            m(xi)
            hook.remove()
            return torch.autograd.grad((caught[0] ** 2).sum(), xi)[0]

        grads.append(run(step))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "case",
    ["float64", "bfloat16", "autocast", "channels_last_3d", "signal", "compile", "vmap", "grad_of_params"],
)
def test_everything_else_takes_the_pure_torch_path(case):
    x = torch.randn(2, 16, 5, 5)
    m = plugattn.HAM(16)
    if case == "float64":
        assert not ham_fast.usable(x.double())
    elif case == "bfloat16":
        assert not ham_fast.usable(x.bfloat16())
    elif case == "autocast":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not ham_fast.usable(x)
            assert m(x).shape == x.shape
    elif case == "channels_last_3d":
        v = torch.randn(2, 16, 3, 4, 5).contiguous(memory_format=torch.channels_last_3d)
        assert not ham_fast.usable(v)
        assert ham_fast.usable(v.contiguous())
        assert plugattn.HAM(16, spatial_dims=3)(v).shape == v.shape
    elif case == "signal":  # 1-D maps are contiguous: native passes, pure-torch spatial conv
        s = torch.randn(2, 16, 30)
        assert ham_fast.usable(s)
        m1 = plugattn.HAM(16, spatial_dims=1)
        ref = plugattn.HAM(16, spatial_dims=1)
        ref.load_state_dict(m1.state_dict())
        out = m1(s)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(ham_fast, "usable", lambda *t: False)
            torch.testing.assert_close(out, ref(s), rtol=1e-5, atol=1e-6)
    elif case == "compile":
        compiled = torch.compile(m, backend="eager", fullgraph=True)
        torch.testing.assert_close(compiled(x), m(x), rtol=1e-5, atol=1e-6)
    elif case == "vmap":
        seen = []
        torch.func.vmap(lambda t: seen.append(ham_fast.usable(t.unsqueeze(0))) or t)(x)
        assert seen == [False]
    elif case == "grad_of_params":  # parameters wrapped by torch.func, a plain input
        seen = []

        def loss(weight):
            seen.append(ham_fast.usable(x, weight))
            return weight.sum()

        torch.func.grad(loss)(m.spatial.conv.weight)
        assert seen == [False]
        assert ham_fast.usable(x, m.spatial.conv.weight)


def test_kernels_off_by_environment_give_the_same_numbers(tmp_path):
    """PLUGATTN_NATIVE=0 in a fresh process: the status says so, and the module computes the same."""
    torch.manual_seed(0)
    m = randomize(plugattn.HAM(16)).train()
    x = torch.randn(2, 16, 6, 6)
    torch.save({"state": m.state_dict(), "x": x}, tmp_path / "case.pt")
    code = (
        "import torch, plugattn; from plugattn.attention import ham_fast\n"
        f"case = torch.load({str(tmp_path / 'case.pt')!r})\n"
        "m = plugattn.HAM(16); m.load_state_dict(case['state'])\n"
        "print(ham_fast.status()); torch.save(m(case['x']).detach(), "
        f"{str(tmp_path / 'out.pt')!r})\n"
    )
    env = {**os.environ, "PLUGATTN_NATIVE": "0"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "off (PLUGATTN_NATIVE=0)"
    torch.testing.assert_close(torch.load(tmp_path / "out.pt"), m(x).detach(), rtol=1e-5, atol=1e-6)


def test_native_kernels_can_be_switched_off_for_a_block():
    x = torch.randn(2, 16, 5, 5)
    assert ham_fast.usable(x)
    with plugattn.attention.native_kernels(False):
        assert not ham_fast.usable(x)
        with plugattn.attention.native_kernels(True):
            assert ham_fast.usable(x)
        assert not ham_fast.usable(x)
    assert ham_fast.usable(x)
    with pytest.raises(ValueError, match="enabled must be True or False, got 'no'"):
        with plugattn.attention.native_kernels("no"):
            pass


def test_the_channel_conv_as_shifted_sums_is_the_conv():
    from plugattn.attention.ham import _shifted_sum

    # By hand: weights (1, 2, 3) over f = (1, 10, 100) with one zero on each side.
    f = torch.tensor([[1.0, 10.0, 100.0]])
    w = torch.tensor([[[1.0, 2.0, 3.0]]])
    assert _shifted_sum(f, w).tolist() == [[32.0, 321.0, 210.0]]  # 2+30, 1+20+300, 10+200
    for c in (1, 2, 5, 33):  # fewer channels than taps too
        for k in (1, 3, 5, 7):
            f = torch.randn(4, c, requires_grad=True)
            w = torch.randn(1, 1, k, requires_grad=True)
            ours = _shifted_sum(f, w)
            theirs = torch.nn.functional.conv1d(f.unsqueeze(1), w, padding=k // 2).squeeze(1)
            torch.testing.assert_close(ours, theirs)
            probe = torch.randn(4, c)
            g_ours = torch.autograd.grad((ours * probe).sum(), (f, w))
            g_theirs = torch.autograd.grad((theirs * probe).sum(), (f, w))
            for a, b in zip(g_ours, g_theirs, strict=True):
                torch.testing.assert_close(a, b)
