"""Every registered module in 1-D ``(B, C, L)`` and 3-D ``(B, C, D, H, W)``, as the 2-D matrix checks it.

The module's own consistency across dimensions (a 2-D module on ``(B, C, 1, L)`` against its 1-D form,
a 3-D module on a depth-1 volume against its 2-D form) is tested per module in
``test_dims_consistency_*.py``; here every module, enrolled by being registered, is held to what a user
of a signal or volume model relies on: the shape, finite values, gradients to the input and to every
parameter, the 2-D state-dict keys, layout parity and ``torch.compile(fullgraph=True)`` with sizes
that change between calls.
"""

from __future__ import annotations

import copy

import pytest
import torch

import plugattn
from tests.attention.cases import CASES
from tests.attention.test_matrix import assert_gradients_reach_everything, build, randomize

NAMES = [n for n in plugattn.list_attention() if n in CASES]
# A module with no sensible form in some dimension says so when built; none of the registered ones is
# expected to (a module added with such a gap must be listed here, with the reason, to pass).
NO_FORM: dict[str, tuple[int, ...]] = {}
DIMS = [pytest.param(n, d, id=f"{n}-{d}d") for n in NAMES for d in (1, 3) if d not in NO_FORM.get(n, ())]

SHAPES = {
    1: [((2, 12), "train"), ((3, 7), "train"), ((2, 16), "eval"), ((1, 1), "eval"), ((1, 5), "eval")],
    3: [((2, 4, 6, 5), "train"), ((3, 3, 4, 7), "train"), ((2, 5, 4, 4), "eval"), ((1, 1, 1, 1), "eval")],
}


def signal(channels: int, spatial: tuple[int, ...], seed: int = 2, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(spatial[0], channels, *spatial[1:], generator=g, dtype=torch.float64).to(dtype)


def build_nd(name: str, dims: int, seed: int = 0):
    channels = CASES[name].channels[0]
    return build(name, channels, seed, spatial_dims=dims), channels


@pytest.mark.parametrize("name,dims", DIMS)
def test_shape_and_finite(name, dims):
    m, c = build_nd(name, dims)
    randomize(m)
    for shape, mode in SHAPES[dims]:
        m.train(mode == "train")
        x = signal(c, shape)
        y = m(x)
        assert y.shape == x.shape, (shape, mode)
        assert torch.isfinite(y).all(), (shape, mode)


@pytest.mark.parametrize("name,dims", DIMS)
def test_gradients_reach_input_and_every_parameter(name, dims):
    m, c = build_nd(name, dims)
    assert_gradients_reach_everything(randomize(m).train(), signal(c, SHAPES[dims][0][0]))


# Modules with one part per spatial axis have that part's keys only where the axis exists (a part kept
# for an absent axis would get no gradient): (dims, key prefix, present?) against the 2-D keys.
PER_AXIS_KEYS = {
    ("scsa", 1): ("norm_h.", False),  # SCSA: one GroupNorm per axis's gate
    ("scsa", 3): ("norm_d.", True),
    ("triplet", 1): ("hc.", False),  # triplet: one branch per axis rotated with the channels
    ("triplet", 3): ("dc.", True),
}


@pytest.mark.parametrize("name,dims", DIMS)
def test_state_dict_keys_are_the_2d_keys(name, dims):
    m, c = build_nd(name, dims)
    flat = build(name, c)
    expected = list(flat.state_dict())
    if (name, dims) in PER_AXIS_KEYS:
        prefix, present = PER_AXIS_KEYS[name, dims]
        got = [k for k in m.state_dict() if not k.startswith(prefix)]
        assert any(k.startswith(prefix) for k in m.state_dict()) == present
        assert got == [k for k in expected if not k.startswith(prefix)]
        return
    assert list(m.state_dict()) == expected
    # Every tensor keeps its meaning: kernels gain or lose spatial axes, nothing else changes shape.
    for key, t in m.state_dict().items():
        if key not in flat.state_dict():
            continue
        t2 = flat.state_dict()[key]
        if t.dim() == t2.dim() + dims - 2 and t2.dim() >= 3:  # a conv kernel (out, in, *k)
            assert t.shape[:2] == t2.shape[:2], key
        else:
            assert t.shape == t2.shape, key


@pytest.mark.parametrize("name,dims", DIMS)
def test_float64_and_bfloat16(name, dims):
    c = CASES[name].channels[0]
    for dtype in (torch.float64, torch.bfloat16):
        m = build(name, c, spatial_dims=dims, dtype=dtype).eval()
        y = m(signal(c, SHAPES[dims][0][0], dtype=dtype))
        assert y.dtype == dtype and torch.isfinite(y.float()).all()


@pytest.mark.parametrize("name", [n for n in NAMES if 3 not in NO_FORM.get(n, ())])
def test_channels_last_3d_parity(name):
    m, c = build_nd(name, 3)
    randomize(m).eval()
    x = signal(c, (2, 5, 6, 4))
    y = m(x)
    y_cl = copy.deepcopy(m).to(memory_format=torch.channels_last_3d)(
        x.to(memory_format=torch.channels_last_3d)
    )
    torch.testing.assert_close(y_cl, y, rtol=1e-4, atol=1e-5 * max(1.0, y.abs().max().item()))


CHANGING = {1: [(2, 12), (3, 7), (1, 20)], 3: [(2, 4, 6, 5), (3, 3, 4, 7), (1, 5, 5, 5)]}


@pytest.mark.parametrize("name,dims", DIMS)
def test_compile_fullgraph_with_changing_shapes(name, dims):
    """aot_eager traces forward and backward whole (no graph break) as the sizes change between calls,
    the automatic way (static first, dynamic on the recompile); train, then eval."""
    torch._dynamo.reset()
    m, c = build_nd(name, dims)
    randomize(m)
    compiled = torch.compile(m, backend="aot_eager", fullgraph=True)
    for shape in CHANGING[dims]:
        x = signal(c, shape).requires_grad_()
        m.train()
        ref = m(x)
        ref.square().sum().backward()
        ref_grad, x.grad = x.grad.clone(), None
        y = compiled(x)
        y.square().sum().backward()
        torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(x.grad, ref_grad, rtol=1e-4, atol=1e-5)
        m.eval()
        with torch.no_grad():
            torch.testing.assert_close(compiled(x), m(x), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name,dims", DIMS)
def test_compile_inductor(name, dims):
    torch._dynamo.reset()
    m, c = build_nd(name, dims)
    randomize(m).train()
    x = signal(c, CHANGING[dims][0]).requires_grad_()
    ref = m(x)
    ref.square().sum().backward()
    ref_grad, x.grad = x.grad.clone(), None
    y = torch.compile(m, fullgraph=True)(x)
    y.square().sum().backward()
    torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(
        x.grad, ref_grad, rtol=1e-4, atol=max(1e-5, 2e-3 * ref_grad.abs().max().item())
    )


@pytest.mark.parametrize("name", NAMES)
def test_wrong_dimension_is_named(name):
    c = CASES[name].channels[0]
    m = build(name, c, spatial_dims=1)
    with pytest.raises(ValueError, match=r"\(B, C, L\).*4-D.*spatial_dims=2"):
        m(torch.randn(2, c, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\).*5-D.*spatial_dims=3"):
        build(name, c)(torch.randn(2, c, 3, 4, 4))


@pytest.mark.parametrize("bad", [0, 4, 2.0, True, "2"])
def test_spatial_dims_out_of_range(bad):
    with pytest.raises(ValueError, match=r"spatial_dims must be 1, 2 or 3, got"):
        plugattn.create_attention("se", 16, spatial_dims=bad)
    with pytest.raises(ValueError, match=r"spatial_dims must be 1, 2 or 3, got"):
        plugattn.create_attention(None, 16, spatial_dims=bad)


def test_user_factories_get_spatial_dims_only_off_2d():
    seen = []

    def factory(channels, **kwargs):
        seen.append(kwargs)
        return torch.nn.Identity()

    plugattn.create_attention(factory, 8)
    plugattn.create_attention(factory, 8, spatial_dims=3)
    assert seen == [{}, {"spatial_dims": 3}]
