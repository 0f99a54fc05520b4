"""GC, triplet, RCCA, EMA and Shuffle Attention against independent formulations, and their errors.

Each reference is written from the paper's equations in a different shape from the module (loops over
samples, groups or positions; explicit rotations; index lists) and reads the module's weights.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import plugattn
from plugattn.attention import EMA, CrissCross, GlobalContext, ShuffleAttention, TripletAttention
from tests.attention.test_matrix import randomize

NORM_EPS = 1e-5  # every BatchNorm/GroupNorm/LayerNorm in the authors' code keeps PyTorch's default eps


def _x(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def _f64(module: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    return randomize(module.double(), seed=seed)


# --------------------------------------------------------------------------------------------- GC


def gc_reference(m: GlobalContext, x: torch.Tensor) -> torch.Tensor:
    """Sample by sample: softmax-weighted sum of the positions, then the transform, then add."""
    w_k, b_k = m.conv_mask.weight.reshape(-1), m.conv_mask.bias  # (C,), (1,)
    conv1, norm, conv2 = m.transform[0], m.transform[1], m.transform[3]
    w1, b1 = conv1.weight.reshape(conv1.out_channels, -1), conv1.bias  # (C_r, C)
    w2, b2 = conv2.weight.reshape(conv2.out_channels, -1), conv2.bias  # (C, C_r)
    out = []
    for xi in x:
        positions = xi.reshape(xi.shape[0], -1).T  # (N, C): one row per position
        logits = torch.stack([(p * w_k).sum() + b_k[0] for p in positions])
        alpha = torch.exp(logits - logits.max())
        alpha = alpha / alpha.sum()
        z = sum(a * p for a, p in zip(alpha, positions, strict=True))  # (C,)
        u = w1 @ z + b1
        u = (u - u.mean()) / torch.sqrt(u.var(unbiased=False) + NORM_EPS)
        u = u * norm.weight.reshape(-1) + norm.bias.reshape(-1)
        t = w2 @ torch.relu(u) + b2  # (C,)
        out.append(xi + t[:, None, None])
    return torch.stack(out)


@pytest.mark.parametrize("shape", [(2, 32, 5, 7), (1, 64, 1, 1), (3, 32, 4, 4)])
def test_gc_matches_reference(shape):
    m = _f64(GlobalContext(shape[1]))
    x = _x(*shape)
    torch.testing.assert_close(m(x), gc_reference(m, x))


def test_gc_starts_as_identity_and_zero_last_conv_is_identity():
    x = _x(2, 32, 6, 5)
    torch.testing.assert_close(GlobalContext(32).double()(x), x, rtol=0, atol=0)
    m = _f64(GlobalContext(32))
    assert not torch.allclose(m(x), x)
    with torch.no_grad():
        m.transform[-1].weight.zero_()
        m.transform[-1].bias.zero_()
    torch.testing.assert_close(m(x), x, rtol=0, atol=0)


def test_gc_fuses_by_addition_not_gating():
    # A multiplicative gate maps a zero input to zero; GC adds transform(context) = transform(0).
    m = _f64(GlobalContext(32))
    y = m(torch.zeros(1, 32, 3, 3, dtype=torch.float64))
    assert y.abs().min() > 0
    assert torch.allclose(y, y[:, :, :1, :1].expand_as(y))  # one context vector for all positions


def test_gc_gate_is_a_softmax_over_positions_and_one_on_a_single_position():
    m = _f64(GlobalContext(32))
    with plugattn.capture_attention_maps(m) as maps:
        m(_x(2, 32, 4, 5))
        m(_x(2, 32, 1, 1, seed=3))
    a, a_one = maps["gate"]
    assert a.shape == (2, 1, 20)
    torch.testing.assert_close(a.sum(dim=-1), torch.ones(2, 1, dtype=torch.float64))
    torch.testing.assert_close(a_one, torch.ones(2, 1, 1, dtype=torch.float64), rtol=0, atol=0)


def test_gc_reduced_width():
    assert GlobalContext(64).rd_channels == 4
    assert GlobalContext(16).rd_channels == 1
    assert GlobalContext(64, rd_channels=7).rd_channels == 7
    assert GlobalContext(64, rd_ratio=0.25).rd_channels == 16


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"channels": 0}, "channels must be >= 1, got 0"),
        ({"channels": 32, "rd_ratio": 0}, r"rd_ratio must lie in \(0, 1\]"),
        ({"channels": 32, "rd_ratio": 1.5}, r"rd_ratio must lie in \(0, 1\]"),
        ({"channels": 32, "rd_channels": 0}, "rd_channels must be >= 1"),
        ({"channels": 32, "rd_channels": 2.0}, "rd_channels must be an integer"),
    ],
)
def test_gc_errors(kwargs, match):
    channels = kwargs.pop("channels")
    with pytest.raises(ValueError, match=match):
        GlobalContext(channels, **kwargs)


# ---------------------------------------------------------------------------------------- triplet


def _branch(branch, z: torch.Tensor, training: bool) -> torch.Tensor:
    """σ(BN(conv(z))) with the branch's weights, BatchNorm written through the functional form."""
    bn = branch.bn
    s = F.conv2d(z, branch.conv.weight, padding=branch.conv.kernel_size[0] // 2)
    if training:
        mean, var = s.mean(), s.var(unbiased=False)
    else:
        mean, var = bn.running_mean, bn.running_var
    return torch.sigmoid((s - mean) / torch.sqrt(var + NORM_EPS) * bn.weight + bn.bias)


def _zpool(t: torch.Tensor) -> torch.Tensor:
    return torch.cat([t.max(dim=1, keepdim=True).values, t.mean(dim=1, keepdim=True)], dim=1)


def triplet_reference(
    m: TripletAttention, x: torch.Tensor, training: bool, rotate_back: bool = True
) -> torch.Tensor:
    """The paper's figure: rotate with ``torch.rot90``, attend, rotate back, average."""
    outs = []
    for branch, dims in ((m.hc, (1, 2)), (m.cw, (1, 3))):
        xr = torch.rot90(x, 1, dims=dims)  # H (resp. W) now plays the channel role
        yr = xr * _branch(branch, _zpool(xr), training)
        outs.append(torch.rot90(yr, -1, dims=dims) if rotate_back else yr)
    if not m.no_spatial:
        outs.append(x * _branch(m.hw, _zpool(x), training))
    return sum(outs) / len(outs)


@pytest.mark.parametrize("no_spatial", [False, True], ids=["three", "no_spatial"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", [(2, 16, 5, 7), (3, 8, 9, 4)])
def test_triplet_matches_rotation_reference(shape, training, no_spatial):
    m = _f64(TripletAttention(shape[1], no_spatial=no_spatial, kernel_size=5)).train(training)
    x = _x(*shape)
    torch.testing.assert_close(m(x), triplet_reference(m, x, training))


def test_triplet_reference_catches_a_branch_not_rotated_back():
    # With C = H = W a forgotten rotate-back still runs; only the values tell.
    m = _f64(TripletAttention(6)).eval()
    x = _x(2, 6, 6, 6)
    y = m(x)
    torch.testing.assert_close(y, triplet_reference(m, x, False))
    assert (y - triplet_reference(m, x, False, rotate_back=False)).abs().max() > 1e-2


def test_triplet_branches_and_gates():
    m = TripletAttention(16)
    assert set(plugattn.gate_modules(m)) == {"hc.gate", "cw.gate", "hw.gate"}
    assert sum(p.numel() for p in m.parameters()) == 3 * (2 * 49 + 2)
    m2 = TripletAttention(16, no_spatial=True)
    assert m2.hw is None and set(plugattn.gate_modules(m2)) == {"hc.gate", "cw.gate"}
    with plugattn.capture_attention_maps(m.eval()) as maps:
        m(torch.randn(2, 16, 5, 7))
    assert maps["hc.gate"][0].shape == (2, 1, 16, 7)  # the (C, W) plane
    assert maps["cw.gate"][0].shape == (2, 1, 5, 16)  # the (H, C) plane
    assert maps["hw.gate"][0].shape == (2, 1, 5, 7)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"channels": 0}, "channels must be >= 1, got 0"),
        ({"kernel_size": 4}, "kernel_size must be odd"),
        ({"kernel_size": 0}, "kernel_size must be >= 1"),
        ({"no_spatial": 1}, "no_spatial must be True or False, got 1"),
    ],
)
def test_triplet_errors(kwargs, match):
    channels = kwargs.pop("channels", 16)
    with pytest.raises(ValueError, match=match):
        TripletAttention(channels, **kwargs)


# ------------------------------------------------------------------------------------------- RCCA


def _conv1x1(conv, x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("oc,bchw->bohw", conv.weight.reshape(conv.out_channels, -1), x) + conv.bias.reshape(
        1, -1, 1, 1
    )


def cca_reference(m: CrissCross, x: torch.Tensor, self_once: bool = True) -> torch.Tensor:
    """One criss-cross pass, position by position over its row and column lists."""
    q, k, v = _conv1x1(m.query_conv, x), _conv1x1(m.key_conv, x), _conv1x1(m.value_conv, x)
    b, c, h, w = x.shape
    out = torch.empty_like(x)
    for n in range(b):
        for i in range(h):
            for j in range(w):
                path = [(i, jj) for jj in range(w)]  # the row, self included
                path += [(ii, j) for ii in range(h) if ii != i or not self_once]  # the column
                energy = torch.stack([(q[n, :, i, j] * k[n, :, a, bb]).sum() for a, bb in path])
                attn = torch.softmax(energy, dim=0)
                agg = sum(wt * v[n, :, a, bb] for wt, (a, bb) in zip(attn, path, strict=True))
                out[n, :, i, j] = x[n, :, i, j] + m.gamma[0] * agg
    return out


@pytest.mark.parametrize("recurrence", [1, 2])
@pytest.mark.parametrize("shape", [(2, 16, 3, 4), (1, 16, 1, 5), (1, 24, 4, 1), (1, 16, 1, 1)])
def test_rcca_matches_per_position_loop(shape, recurrence):
    m = _f64(CrissCross(shape[1], recurrence=recurrence))
    x = _x(*shape)
    ref = x
    for _ in range(recurrence):  # the same weights every pass
        ref = cca_reference(m, ref)
    torch.testing.assert_close(m(x), ref)


def test_rcca_counts_the_self_position_once():
    m = _f64(CrissCross(16, recurrence=1))
    x = _x(1, 16, 3, 3)
    assert (m(x) - cca_reference(m, x, self_once=False)).abs().max() > 1e-3
    with plugattn.capture_attention_maps(m) as maps:
        m(x)
    (a,) = maps["gate"]  # (B, H, W, H + W): column entries first, then the row
    assert a.shape == (1, 3, 3, 6)
    torch.testing.assert_close(a.sum(dim=-1), torch.ones(1, 3, 3, dtype=torch.float64))
    for i in range(3):
        assert (a[0, i, :, i] == 0).all()  # the column's copy of the self position is masked


def test_rcca_recurrence_shares_weights_and_starts_as_identity():
    counts = {r: sum(p.numel() for p in CrissCross(64, recurrence=r).parameters()) for r in (1, 2, 3)}
    assert counts[1] == counts[2] == counts[3] == 2 * (64 * 8 + 8) + 64 * 64 + 64 + 1
    x = _x(2, 16, 4, 5)
    torch.testing.assert_close(CrissCross(16).double()(x), x, rtol=0, atol=0)  # gamma = 0 at init
    m = CrissCross(16)
    with plugattn.capture_attention_maps(m) as maps:
        m(torch.randn(1, 16, 3, 3))
    assert len(maps["gate"]) == 2


def test_rcca_reduced_width():
    assert CrissCross(16).rd_channels == 2
    assert CrissCross(64).rd_channels == 8
    assert CrissCross(4).rd_channels == 1
    assert CrissCross(64, rd_channels=5).rd_channels == 5


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"channels": 0}, "channels must be >= 1, got 0"),
        ({"recurrence": 0}, "recurrence must be >= 1, got 0"),
        ({"recurrence": 1.5}, "recurrence must be an integer"),
        ({"rd_ratio": 0}, r"rd_ratio must lie in \(0, 1\]"),
        ({"rd_channels": 0}, "rd_channels must be >= 1"),
    ],
)
def test_rcca_errors(kwargs, match):
    channels = kwargs.pop("channels", 16)
    with pytest.raises(ValueError, match=match):
        CrissCross(channels, **kwargs)


# -------------------------------------------------------------------------------------------- EMA


def ema_reference(m: EMA, x: torch.Tensor) -> torch.Tensor:
    """Sample by sample and group by group, with the convs as matrix products where they are 1×1."""
    b, c_all, h, w = x.shape
    c = c_all // m.factor
    w1, b1 = m.conv1x1.weight.reshape(c, c), m.conv1x1.bias
    out = torch.empty_like(x)
    for n in range(b):
        for g in range(m.factor):
            sl = slice(g * c, (g + 1) * c)
            xg = x[n, sl]  # (c, H, W)
            a_h = torch.sigmoid(w1 @ xg.mean(dim=2) + b1[:, None])  # (c, H)
            a_w = torch.sigmoid(w1 @ xg.mean(dim=1) + b1[:, None])  # (c, W)
            y = xg * a_h[:, :, None] * a_w[:, None, :]
            mu = y.mean(dim=(1, 2), keepdim=True)
            var = y.var(dim=(1, 2), unbiased=False, keepdim=True)
            x1 = (y - mu) / torch.sqrt(var + NORM_EPS) * m.gn.weight[:, None, None] + m.gn.bias[:, None, None]
            x2 = F.conv2d(xg[None], m.conv3x3.weight, m.conv3x3.bias, padding=1)[0]
            s1 = torch.softmax(x1.mean(dim=(1, 2)), dim=0)  # (c,)
            s2 = torch.softmax(x2.mean(dim=(1, 2)), dim=0)
            weights = (s1[:, None, None] * x2).sum(dim=0) + (s2[:, None, None] * x1).sum(dim=0)  # (H, W)
            out[n, sl] = xg * torch.sigmoid(weights)
    return out


@pytest.mark.parametrize(
    "channels,factor,shape", [(64, 32, (2, 5, 7)), (32, 4, (1, 6, 6)), (16, 2, (2, 1, 1)), (24, 8, (1, 1, 4))]
)
def test_ema_matches_reference(channels, factor, shape):
    m = _f64(EMA(channels, factor=factor))
    x = _x(shape[0], channels, *shape[1:])
    y = m(x)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y, ema_reference(m, x))


def test_ema_gates():
    m = EMA(64)
    assert set(plugattn.gate_modules(m)) == {"gate", "directional.gate"}
    with plugattn.capture_attention_maps(m) as maps:
        m(torch.randn(2, 64, 5, 7))
    assert maps["gate"][0].shape == (2 * 32, 1, 5, 7)
    assert maps["directional.gate"][0].shape == (2 * 32, 2, 5 + 7, 1)


# Unset group counts: the paper's value where the width allows it, else the largest below it that fits
# (EMA: G | C with G <= 32; SA: 2G | C with G <= 64). Expected values worked out by hand.
EMA_DEFAULT_FACTOR = {16: 16, 24: 24, 32: 32, 40: 20, 48: 24, 64: 32, 96: 32, 160: 32, 320: 32, 2048: 32}
SA_DEFAULT_GROUPS = {16: 8, 24: 12, 32: 16, 64: 32, 96: 48, 128: 64, 160: 40, 320: 40, 2048: 64}


@pytest.mark.parametrize("channels,expected", sorted(EMA_DEFAULT_FACTOR.items()))
def test_ema_default_factor_fits_every_width(channels, expected):
    m = EMA(channels)
    assert m.factor == expected and f"factor={expected}" in repr(m)
    x = torch.randn(2, channels, 5, 4)
    assert m(x).shape == x.shape
    assert EMA(channels, factor=expected).state_dict().keys() == m.state_dict().keys()


@pytest.mark.parametrize("channels,expected", sorted(SA_DEFAULT_GROUPS.items()))
def test_sa_default_groups_fit_every_width(channels, expected):
    m = ShuffleAttention(channels)
    assert m.groups == expected and f"groups={expected}" in repr(m)
    x = torch.randn(2, channels, 5, 4)
    assert m(x).shape == x.shape


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"channels": 48, "factor": 32}, "channels must be divisible by factor=32, got channels=48"),
        ({"channels": 16, "factor": 32}, "channels must be >= factor.*factor=32.*channels=16"),
        ({"channels": 64, "factor": 0}, "factor must be >= 1, got 0"),
        ({"channels": 0}, "channels must be >= 1, got 0"),
    ],
)
def test_ema_errors(kwargs, match):
    channels = kwargs.pop("channels")
    with pytest.raises(ValueError, match=match):
        EMA(channels, **kwargs)


# --------------------------------------------------------------------------------------------- SA


def sa_reference(m: ShuffleAttention, x: torch.Tensor, shuffle: bool = True) -> torch.Tensor:
    """Group by group with channel slices, then the shuffle as an explicit index list."""
    b, c_all, h, w = x.shape
    c = c_all // (2 * m.groups)

    def per_channel(p: torch.Tensor) -> torch.Tensor:
        return p.reshape(1, c, 1, 1)

    parts = []
    for g in range(m.groups):
        x0 = x[:, 2 * c * g : 2 * c * g + c]  # channel half
        x1 = x[:, 2 * c * g + c : 2 * c * (g + 1)]  # spatial half
        s = x0.mean(dim=(2, 3), keepdim=True)
        parts.append(x0 * torch.sigmoid(per_channel(m.cweight) * s + per_channel(m.cbias)))
        mu = x1.mean(dim=(2, 3), keepdim=True)
        var = x1.var(dim=(2, 3), unbiased=False, keepdim=True)
        gn = (x1 - mu) / torch.sqrt(var + NORM_EPS) * per_channel(m.gn.weight) + per_channel(m.gn.bias)
        parts.append(x1 * torch.sigmoid(per_channel(m.sweight) * gn + per_channel(m.sbias)))
    y = torch.cat(parts, dim=1)
    if not shuffle:
        return y
    half = c_all // 2
    order = [s * half + k for k in range(half) for s in range(2)]  # out[2k + s] = y[s·C/2 + k]
    return y[:, order]


@pytest.mark.parametrize(
    "channels,groups,shape", [(128, 64, (2, 5, 7)), (24, 3, (2, 4, 4)), (8, 2, (1, 1, 1))]
)
def test_sa_matches_reference(channels, groups, shape):
    m = _f64(ShuffleAttention(channels, groups=groups))
    x = _x(shape[0], channels, *shape[1:])
    y = m(x)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y, sa_reference(m, x))


def test_sa_shuffles_at_the_end():
    m = _f64(ShuffleAttention(24, groups=3))
    x = _x(2, 24, 4, 5)
    assert (m(x) - sa_reference(m, x, shuffle=False)).abs().max() > 1e-2


def test_sa_init_known_answer():
    # cweight = sweight = 0, cbias = sbias = 1: both halves scaled by σ(1), then shuffled.
    m = ShuffleAttention(8, groups=2).double()
    x = _x(2, 8, 3, 3)
    expected = (x * torch.sigmoid(torch.tensor(1.0, dtype=torch.float64)))[:, [0, 4, 1, 5, 2, 6, 3, 7]]
    torch.testing.assert_close(m(x), expected)
    assert set(plugattn.gate_modules(m)) == {"channel.gate", "spatial.gate"}


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"channels": 64, "groups": 64}, "channels=64 with groups=64"),
        ({"channels": 15}, r"channels=15 cannot be split into groups of 2 equal parts"),
        ({"channels": 96, "groups": 32}, "multiple of 2 \\* groups.*channels=96 with groups=32"),
        ({"channels": 64, "groups": 0}, "groups must be >= 1, got 0"),
        ({"channels": 0}, "channels must be >= 1, got 0"),
    ],
)
def test_sa_errors(kwargs, match):
    channels = kwargs.pop("channels")
    with pytest.raises(ValueError, match=match):
        ShuffleAttention(channels, **kwargs)
