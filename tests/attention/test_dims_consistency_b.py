"""SE, ECA, GC, SimAM, SA, CA, EMA and RCCA across dimensions: each form against the one below it.

Where the maths says so, the 2-D module on ``(B, C, 1, L)`` equals its 1-D form on ``(B, C, L)``, and the
3-D module on a depth-1 volume ``(B, C, 1, H, W)`` equals its 2-D form, given the corresponding weights:
a kernel of the lower form is the higher kernel's middle slice along the length-1 axis (the only slice
that touches data there under zero padding; 1×1 kernels are just reshaped), the other slices stay
random. Output, input gradient and BatchNorm running statistics agree in train and eval mode.

Where it does not (CA in 3-D, EMA in 1-D and 3-D: the length-1 axis's directional branch is a
per-channel gate the lower form lacks), the test says so, and the form is checked against an
independent transcription written here. The modules built from statistics over the set of positions
(SE, ECA, GC, SimAM, SA) are also checked on volumes of depth > 1, and RCCA against a position loop.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import plugattn

NORM_EPS = 1e-5  # PyTorch's default eps, which every norm in these modules keeps
TOL = {"rtol": 1e-9, "atol": 1e-9}  # float64 throughout
# name -> (channels, options): widths where every path carries signal.
CONFIG = {
    "se": (32, {}),  # r_c = 2
    "eca": (16, {}),  # k = 3
    "gc": (16, {"rd_channels": 4}),  # C_r = 4: with 1 the LayerNorm would cut the context path
    "simam": (8, {}),
    "sa": (16, {"groups": 4}),  # c = 2 channels per half
    "rcca": (16, {}),  # C' = 2, recurrence 2
    "ca": (16, {}),  # m = 8
    "ema": (16, {"factor": 4}),  # c = 4 channels per group
}
HOLDS = [("se", 1), ("eca", 1), ("gc", 1), ("simam", 1), ("sa", 1), ("rcca", 1), ("ca", 1)]
HOLDS += [("se", 3), ("eca", 3), ("gc", 3), ("simam", 3), ("sa", 3), ("rcca", 3)]
FAILS = [("ca", 3), ("ema", 1), ("ema", 3)]  # (name, the dimension compared with 2-D)


def build(name: str, dims: int, seed: int = 1) -> nn.Module:
    """The module in float64 with every parameter and BatchNorm statistic random."""
    channels, options = CONFIG[name]
    m = plugattn.create_attention(name, channels, spatial_dims=dims, dtype=torch.float64, **options)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.5)
        for mod in m.modules():
            if isinstance(mod, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)):
                mod.weight.copy_(1 + 0.1 * torch.randn(mod.weight.shape, generator=g, dtype=torch.float64))
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.running_mean.copy_(0.1 * torch.randn(mod.running_mean.shape, generator=g))
                mod.running_var.copy_(0.5 + torch.rand(mod.running_var.shape, generator=g))
    return m


def lower_form(high: nn.Module, name: str, dims: int) -> nn.Module:
    """The ``dims``-D module holding ``high``'s weights, each kernel its middle slice along axis 2."""
    low = build(name, dims, seed=7)
    state = {}
    for key, t in high.state_dict().items():
        target = low.state_dict()[key]
        if t.dim() == target.dim() + 1:  # a kernel (or per-channel tensor) with one more spatial axis
            t = t.select(2, t.shape[2] // 2)
        assert t.shape == target.shape, key
        state[key] = t
    low.load_state_dict(state)
    return low


def data(*shape: int, seed: int = 3) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def run(m: nn.Module, x: torch.Tensor, upstream: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_()
    y = m(x)
    (y * upstream).sum().backward()
    return y.detach(), x.grad


def compare(name: str, dims: int, train: bool) -> tuple[dict, dict]:
    """Outputs, input gradients and buffers of the higher module on a length-1 axis and its lower form."""
    high_dims, low_dims = (2, 1) if dims == 1 else (3, 2)
    high = build(name, high_dims).train(train)
    low = lower_form(high, name, low_dims).train(train)
    spatial = (7,) if low_dims == 1 else (4, 5)
    x = data(2, CONFIG[name][0], *spatial)
    up = data(*x.shape, seed=4)
    y_high, g_high = run(high, x.unsqueeze(2), up.unsqueeze(2))
    y_low, g_low = run(low, x, up)
    return (
        {"out": y_high.squeeze(2), "grad": g_high.squeeze(2), **dict(high.named_buffers())},
        {"out": y_low, "grad": g_low, **dict(low.named_buffers())},
    )


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name,dims", HOLDS, ids=[f"{n}-{d}d" for n, d in HOLDS])
def test_length_one_axis_gives_the_lower_form(name, dims, train):
    high, low = compare(name, dims, train)
    assert set(high) == set(low)
    for key in high:
        torch.testing.assert_close(high[key], low[key], **TOL, msg=lambda m, k=key: f"{k}: {m}")


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name,dims", FAILS, ids=[f"{n}-{d}d" for n, d in FAILS])
def test_length_one_axis_adds_a_channel_gate_where_the_docstring_says(name, dims, train):
    """CA in 3-D, EMA in 1-D and 3-D: the length-1 axis's branch pools everything into a per-channel
    gate; the lower form has no such branch, so the outputs differ (which also shows that the
    comparison above can tell two forms apart)."""
    high, low = compare(name, dims, train)
    assert (high["out"] - low["out"]).abs().max() > 1e-3


@pytest.mark.parametrize("name", list(CONFIG))
@pytest.mark.parametrize("dims", [1, 3])
def test_state_dict_keys_are_the_2d_keys(name, dims):
    assert list(build(name, dims).state_dict()) == list(build(name, 2).state_dict())


@pytest.mark.parametrize("name", list(CONFIG))
def test_spatial_dims_is_validated(name):
    channels, options = CONFIG[name]
    cls = plugattn.attention_entry(name).cls
    for bad in (0, 4, 2.0, True):
        with pytest.raises(ValueError, match=rf"^spatial_dims must be 1, 2 or 3, got {bad!r}$"):
            cls(channels, spatial_dims=bad, **options)
    assert cls(channels, spatial_dims=3, **options).spatial_dims == 3


# ----------------------------------------------------------------- volumes and signals of any size


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", ["se", "eca", "gc", "simam", "sa"])
def test_set_of_positions_modules_see_a_volume_as_a_flat_map(name, train):
    """These modules pool or normalise over the set of positions and act pointwise otherwise, so a
    ``(D, H, W)`` volume and the ``(D·H, W)`` map, or the ``(D·H·W,)`` signal, of its positions agree."""
    vol = build(name, 3).train(train)
    flat, signal = lower_form(vol, name, 2).train(train), build(name, 1).train(train)
    signal.load_state_dict(lower_form(flat, name, 1).state_dict())
    x = data(2, CONFIG[name][0], 3, 4, 5)
    y = vol(x)
    torch.testing.assert_close(flat(x.reshape(2, -1, 12, 5)).reshape(x.shape), y, **TOL)
    torch.testing.assert_close(signal(x.flatten(2)).reshape(x.shape), y, **TOL)


def _pointwise(conv: nn.Module, t: torch.Tensor) -> torch.Tensor:
    """A 1×1 conv of any dimension on ``(B, C, N)``."""
    return torch.einsum("oi,bin->bon", conv.weight.flatten(1), t) + conv.bias[:, None]


def ca_3d_reference(m: nn.Module, x: torch.Tensor, train: bool) -> torch.Tensor:
    """CA on a volume: D, H and W branches, each the mean over the other two axes; D and H share conv_h."""
    d, h, w = x.shape[2:]
    z = torch.cat((x.mean(dim=(3, 4)), x.mean(dim=(2, 4)), x.mean(dim=(2, 3))), dim=2)  # (B, C, D+H+W)
    y = _pointwise(m.conv1, z)
    bn = m.bn1
    mean, var = (
        (y.mean(dim=(0, 2)), y.var(dim=(0, 2), unbiased=False))
        if train
        else (bn.running_mean, bn.running_var)
    )
    y = (y - mean[:, None]) / torch.sqrt(var[:, None] + NORM_EPS) * bn.weight[:, None] + bn.bias[:, None]
    f = y * torch.clamp(y + 3, 0, 6) / 6  # h-swish
    f_d, f_h, f_w = f.split((d, h, w), dim=2)
    g_d, g_h = torch.sigmoid(_pointwise(m.conv_h, f_d)), torch.sigmoid(_pointwise(m.conv_h, f_h))
    g_w = torch.sigmoid(_pointwise(m.conv_w, f_w))
    return torch.einsum("bcdhw,bcd,bch,bcw->bcdhw", x, g_d, g_h, g_w)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_ca_3d_matches_reference(train):
    m = build("ca", 3).train(train)
    x = data(2, 16, 3, 4, 5)
    torch.testing.assert_close(m(x), ca_3d_reference(m, x, train), **TOL)


def test_ca_gates_one_per_branch_in_axis_order():
    shapes = {}
    for dims, spatial in ((1, (7,)), (3, (3, 4, 5))):
        m = build("ca", dims).eval()
        with plugattn.capture_attention_maps(m) as maps:
            m(data(2, 16, *spatial))
        shapes[dims] = [tuple(t.shape) for t in maps["gate"]]
    assert shapes[1] == [(2, 16, 1), (2, 16, 7)]  # the pooled (global) branch, then the per-position one
    assert shapes[3] == [(2, 16, 3, 1, 1), (2, 16, 1, 4, 1), (2, 16, 1, 1, 5)]


def ema_reference(m: nn.Module, x: torch.Tensor, groups: int) -> torch.Tensor:
    """EMA in 1-D or 3-D, group by group: directional gates, GroupNorm, the 3^d conv, cross-spatial."""
    b, c, *size = x.shape
    xg = x.reshape(b * groups, c // groups, *size)
    if len(size) == 1:  # one branch, nothing to pool: a per-position gate
        directional = xg * torch.sigmoid(_pointwise(m.conv1x1, xg))
        x2 = F.conv1d(xg, m.conv3x3.weight, m.conv3x3.bias, padding=1)
    else:
        p = torch.cat((xg.mean(dim=(3, 4)), xg.mean(dim=(2, 4)), xg.mean(dim=(2, 3))), dim=2)
        a_d, a_h, a_w = torch.sigmoid(_pointwise(m.conv1x1, p)).split(tuple(size), dim=2)
        directional = torch.einsum("ncdhw,ncd,nch,ncw->ncdhw", xg, a_d, a_h, a_w)
        x2 = F.conv3d(xg, m.conv3x3.weight, m.conv3x3.bias, padding=1)
    flat = directional.flatten(2)  # (B·G, c, N)
    x1 = (flat - flat.mean(-1, keepdim=True)) / torch.sqrt(
        flat.var(-1, unbiased=False, keepdim=True) + NORM_EPS
    )
    x1 = x1 * m.gn.weight[:, None] + m.gn.bias[:, None]
    x2 = x2.flatten(2)
    s1, s2 = torch.softmax(x1.mean(-1), dim=1), torch.softmax(x2.mean(-1), dim=1)  # (B·G, c)
    w = torch.einsum("nc,ncp->np", s1, x2) + torch.einsum("nc,ncp->np", s2, x1)  # (B·G, N)
    return (xg.flatten(2) * torch.sigmoid(w)[:, None]).reshape(x.shape)


@pytest.mark.parametrize("spatial", [(9,), (1,), (3, 4, 5), (1, 3, 4)], ids=["L9", "L1", "3x4x5", "1x3x4"])
def test_ema_matches_reference(spatial):
    m = build("ema", len(spatial)).train()
    x = data(2, 16, *spatial)
    torch.testing.assert_close(m(x), ema_reference(m, x, groups=4), **TOL)
    assert m.conv3x3.weight.shape == (4, 4) + (3,) * len(spatial)  # a 3^d kernel
    c = 4  # channels per group
    expected = (c * c + c) + (3 ** len(spatial) * c * c + c) + 2 * c  # 1x1, 3^d (biases on), GroupNorm
    assert sum(p.numel() for p in m.parameters()) == expected


def cca_reference(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One pass, position by position: the lines through it along every axis, itself counted once."""
    b, c, *size = x.shape
    q, k, v = (
        _pointwise(conv, x.flatten(2)).reshape(b, -1, *size)
        for conv in (m.query_conv, m.key_conv, m.value_conv)
    )
    out = torch.empty_like(x)
    for u in itertools.product(*(range(s) for s in size)):
        path = []
        for axis, s in enumerate(size):
            last = axis == len(size) - 1
            path += [u[:axis] + (t,) + u[axis + 1 :] for t in range(s) if last or t != u[axis]]
        keys = torch.stack([k[(slice(None), slice(None), *p)] for p in path], dim=-1)  # (B, C', |Ω_u|)
        values = torch.stack([v[(slice(None), slice(None), *p)] for p in path], dim=-1)  # (B, C, |Ω_u|)
        attn = torch.softmax(torch.einsum("bc,bcn->bn", q[(slice(None), slice(None), *u)], keys), dim=-1)
        out[(slice(None), slice(None), *u)] = x[(slice(None), slice(None), *u)] + m.gamma * torch.einsum(
            "bn,bcn->bc", attn, values
        )
    return out


@pytest.mark.parametrize("spatial", [(6,), (1,), (2, 3, 4), (3, 1, 2)], ids=["L6", "L1", "2x3x4", "3x1x2"])
def test_rcca_matches_per_position_loop(spatial):
    m = build("rcca", len(spatial))
    x = data(2, 16, *spatial)
    ref = cca_reference(m, cca_reference(m, x))  # recurrence 2, the same weights
    torch.testing.assert_close(m(x), ref, **TOL)
    with plugattn.capture_attention_maps(m) as maps:
        m(x)
    assert maps["gate"][0].shape == (2, *spatial, sum(spatial))
