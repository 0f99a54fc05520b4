"""Known answers and independent formulations for SE, ECA, CBAM, Coordinate Attention and SimAM.

Each reference below is written from the paper's equations (loops, einsum or numpy), sharing only the
module's weights, so a look-alike of the module (an avg-only CBAM, SimAM with n = HW, a C→C ECA conv)
fails here even where shapes and gradients look right.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import plugattn
from plugattn.attention import CBAM, ECA, SE, CoordAtt, SimAM
from plugattn.attention.se import make_layer

NORM_EPS = 1e-5  # CBAM's and CA's BatchNorms, as in the authors' code (PyTorch's default eps)


def _randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _randomize(module: nn.Module, seed: int = 1) -> nn.Module:
    """Random weights and BN statistics (BN affines near 1/0), in float64."""
    module = module.double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=g, dtype=m.weight.dtype))
                m.running_mean.copy_(
                    0.1 * torch.randn(m.running_mean.shape, generator=g, dtype=torch.float64)
                )
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g, dtype=torch.float64))
    return module


def _bn_eval(t: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    """Eval-mode BatchNorm over dim 1 of ``t``, written out."""
    shape = (1, -1) + (1,) * (t.dim() - 2)
    scale = bn.weight / torch.sqrt(bn.running_var + NORM_EPS)
    return (t - bn.running_mean.reshape(shape)) * scale.reshape(shape) + bn.bias.reshape(shape)


# --------------------------------------------------------------------------------------------------
# SE
# --------------------------------------------------------------------------------------------------


def test_se_zero_excitation_gives_half():
    m = SE(32)
    with torch.no_grad():
        m.fc2.weight.zero_()
        m.fc2.bias.zero_()
    x = _randn(2, 32, 5, 7, dtype=torch.float32)
    torch.testing.assert_close(m(x), x * 0.5, rtol=0, atol=0)


def test_se_matches_paper_equations():
    m = _randomize(SE(48)).eval()
    x = _randn(3, 48, 6, 5)
    w1, b1 = m.fc1.weight[:, :, 0, 0], m.fc1.bias  # (r, C), (r,)
    w2, b2 = m.fc2.weight[:, :, 0, 0], m.fc2.bias  # (C, r), (C,)
    z = x.sum(dim=(2, 3)) / (6 * 5)  # Eq. 2, (B, C)
    s = torch.sigmoid(torch.einsum("rc,bc->br", w1, z).add(b1).clamp_min(0) @ w2.T + b2)  # Eq. 3
    expected = torch.einsum("bchw,bc->bchw", x, s)  # Eq. 4
    torch.testing.assert_close(m(x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "channels,hidden",
    [(16, 1), (32, 2), (64, 4), (256, 16), (512, 32), (1024, 64), (2048, 128), (8, 1), (48, 3)],
)
def test_reduced_width_is_the_papers_floor(channels, hidden):
    # The one rounding rule: C // 16, at least 1 (timm's round-to-8 would give 8 at C = 16..128).
    assert SE(channels).fc1.weight.shape == (hidden, channels, 1, 1)
    assert CBAM(channels).channel.fc1.weight.shape == (hidden, channels, 1, 1)


def test_se_rd_channels_overrides_ratio():
    assert SE(64, rd_channels=5).fc1.out_channels == 5
    assert SE(64, rd_ratio=1 / 4).fc1.out_channels == 16


# --------------------------------------------------------------------------------------------------
# ECA
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels,k", [(16, 3), (64, 3), (128, 5), (1024, 5), (2048, 7)])
def test_eca_kernel_from_channels(channels, k):
    m = ECA(channels)
    assert m.conv.weight.shape == (1, 1, k)  # a 1 -> 1 conv across channels, not C -> C
    assert m.conv.bias is None
    assert sum(p.numel() for p in m.parameters()) == k


@pytest.mark.parametrize("channels,kernel_size", [(16, 3), (20, 5), (7, 1)])
def test_eca_is_a_windowed_sum_across_channels(channels, kernel_size):
    m = _randomize(ECA(channels, kernel_size=kernel_size))
    x = _randn(2, channels, 4, 3)
    y = x.mean(dim=(2, 3))  # (B, C)
    w = m.conv.weight.detach().reshape(-1)
    half = kernel_size // 2
    expected = torch.empty_like(x)
    for b in range(2):
        for i in range(channels):
            acc = 0.0
            for j in range(kernel_size):
                src = i + j - half  # zero padding: neighbours outside [0, C) contribute nothing
                if 0 <= src < channels:
                    acc += w[j] * y[b, src]
            expected[b, i] = x[b, i] / (1 + math.exp(-float(acc)))
    torch.testing.assert_close(m(x), expected, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------------------
# CBAM
# --------------------------------------------------------------------------------------------------


def _cbam_reference(m: CBAM, x: torch.Tensor) -> torch.Tensor:
    """CBAM Eqs. 1-3 in eval mode, written out with einsum and an explicit 2-D correlation."""
    ch, sp = m.channel, m.spatial
    w0, b0 = ch.fc1.weight[:, :, 0, 0], ch.fc1.bias
    w1, b1 = ch.fc2.weight[:, :, 0, 0], ch.fc2.bias

    def mlp(v: torch.Tensor) -> torch.Tensor:  # (B, C) -> (B, C)
        return torch.einsum("cr,br->bc", w1, torch.relu(torch.einsum("rc,bc->br", w0, v) + b0)) + b1

    avg = x.flatten(2).mean(dim=2)
    mx = x.flatten(2).max(dim=2).values
    mc = torch.sigmoid(mlp(avg) + mlp(mx))  # Eq. 2, both branches
    xc = x * mc[:, :, None, None]

    d = torch.stack((xc.max(dim=1).values, xc.mean(dim=1)), dim=1)  # (B, 2, H, W): [max; mean]
    k = sp.conv.kernel_size[0]
    pad = k // 2
    dp = F.pad(d, (pad, pad, pad, pad))
    h, w = x.shape[2:]
    s = torch.zeros(x.shape[0], 1, h, w, dtype=x.dtype)
    for c in range(2):
        for u in range(k):
            for v in range(k):
                s[:, 0] += sp.conv.weight[0, c, u, v] * dp[:, c, u : u + h, v : v + w]
    ms = torch.sigmoid(_bn_eval(s, sp.bn))  # Eq. 3 (BN as in the authors' code)
    return xc * ms


@pytest.mark.parametrize("channels,shape", [(16, (5, 6)), (64, (7, 7)), (33, (1, 4))])
def test_cbam_matches_paper_equations(channels, shape):
    m = _randomize(CBAM(channels)).eval()
    x = _randn(2, channels, *shape)
    torch.testing.assert_close(m(x), _cbam_reference(m, x), rtol=1e-10, atol=1e-12)


def test_cbam_channel_map_uses_the_max_branch():
    # Moving mass inside one channel keeps its average and changes its maximum: an avg-only CBAM
    # (or one that computes the max branch and drops it) gives the same channel map for both inputs.
    m = _randomize(CBAM(16)).eval()
    x = _randn(1, 16, 4, 4)
    x2 = x.clone()
    peak = x2[0, 3].flatten().argmax()
    x2[0, 3].view(-1)[peak] += 2.0
    x2[0, 3].view(-1)[(peak + 1) % 16] -= 2.0
    torch.testing.assert_close(x2.mean(dim=(2, 3)), x.mean(dim=(2, 3)))
    assert not torch.allclose(m.channel(x2), m.channel(x))


def test_cbam_spatial_is_2_to_1_kxk_without_bias():
    m = CBAM(64, spatial_kernel_size=3)
    assert m.spatial.conv.weight.shape == (1, 2, 3, 3)
    assert m.spatial.conv.bias is None
    assert CBAM(64).spatial.conv.weight.shape == (1, 2, 7, 7)
    assert m.spatial.bn.momentum == 0.01


def test_cbam_injected_gate_and_act_are_used():
    m = CBAM(32, gate_layer=nn.Hardsigmoid, act_layer=nn.GELU)
    assert isinstance(m.channel.gate, nn.Hardsigmoid)
    assert isinstance(m.spatial.gate, nn.Hardsigmoid)
    assert isinstance(m.channel.act, nn.GELU)


def test_cbam_gates_give_both_maps():
    m = CBAM(16).eval()
    with plugattn.capture_attention_maps(m) as maps:
        m(_randn(2, 16, 5, 6, dtype=torch.float32))
    assert [t.shape for t in maps["channel.gate"]] == [(2, 16, 1, 1)]
    assert [t.shape for t in maps["spatial.gate"]] == [(2, 1, 5, 6)]


# --------------------------------------------------------------------------------------------------
# Coordinate Attention
# --------------------------------------------------------------------------------------------------


def _ca_reference(m: CoordAtt, x: torch.Tensor, train: bool) -> torch.Tensor:
    """CA Eqs. 4-9 written per position; in training, BN uses the batch's statistics over (B, H+W)."""
    b, c, h, w = x.shape
    z_h = torch.stack([x[:, :, i, :].mean(dim=2) for i in range(h)], dim=2)  # (B, C, H)
    z_w = torch.stack([x[:, :, :, j].mean(dim=2) for j in range(w)], dim=2)  # (B, C, W)
    z = torch.cat((z_h, z_w), dim=2)  # (B, C, H + W)
    f = torch.einsum("mc,bcp->bmp", m.conv1.weight[:, :, 0, 0], z) + m.conv1.bias[None, :, None]
    if train:
        mean = f.mean(dim=(0, 2), keepdim=True)
        var = f.var(dim=(0, 2), unbiased=False, keepdim=True)
        f = (f - mean) / torch.sqrt(var + NORM_EPS) * m.bn1.weight[None, :, None] + m.bn1.bias[None, :, None]
    else:
        f = _bn_eval(f, m.bn1)
    f = f * torch.clamp(f + 3, 0, 6) / 6  # h-swish
    g_h = torch.sigmoid(
        torch.einsum("cm,bmp->bcp", m.conv_h.weight[:, :, 0, 0], f[:, :, :h]) + m.conv_h.bias[:, None]
    )
    g_w = torch.sigmoid(
        torch.einsum("cm,bmp->bcp", m.conv_w.weight[:, :, 0, 0], f[:, :, h:]) + m.conv_w.bias[:, None]
    )
    return torch.einsum("bcij,bci,bcj->bcij", x, g_h, g_w)  # Eq. 9


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("channels,shape", [(16, (5, 7)), (64, (4, 4)), (24, (1, 3))])
def test_ca_matches_paper_equations(channels, shape, train):
    m = _randomize(CoordAtt(channels)).train(train)
    x = _randn(3, channels, *shape)
    torch.testing.assert_close(m(x), _ca_reference(m, x, train), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("channels,hidden", [(16, 8), (64, 8), (256, 8), (320, 10), (512, 16), (2048, 64)])
def test_ca_hidden_width(channels, hidden):
    m = CoordAtt(channels)
    assert m.conv1.weight.shape == (hidden, channels, 1, 1)
    assert m.conv_h.weight.shape == m.conv_w.weight.shape == (channels, hidden, 1, 1)


def test_ca_state_dict_keys_are_the_authors():
    keys = set(CoordAtt(32).state_dict())
    expected = {f"conv{s}.{p}" for s in ("1", "_h", "_w") for p in ("weight", "bias")}
    expected |= {f"bn1.{k}" for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    assert keys == expected


def test_ca_gate_fires_twice_h_then_w():
    m = CoordAtt(16).eval()
    with plugattn.capture_attention_maps(m) as maps:
        m(_randn(2, 16, 5, 7, dtype=torch.float32))
    assert [t.shape for t in maps["gate"]] == [(2, 16, 5, 1), (2, 16, 1, 7)]


# --------------------------------------------------------------------------------------------------
# SimAM
# --------------------------------------------------------------------------------------------------


def _simam_numpy(x: np.ndarray, e_lambda: float, n_trap: bool = False) -> np.ndarray:
    """SimAM's closed form (paper Eqs. 5-6, n = HW - 1 as the authors' code) in float64 numpy."""
    out = np.empty_like(x)
    hw = x.shape[2] * x.shape[3]
    n = hw if n_trap else hw - 1
    for b in range(x.shape[0]):
        for c in range(x.shape[1]):
            t = x[b, c]
            mu = t.sum() / hw
            var = ((t - mu) ** 2).sum() / n
            e_inv = (t - mu) ** 2 / (4 * (var + e_lambda)) + 0.5  # 1 / e*
            out[b, c] = t / (1 + np.exp(-e_inv))
    return out


@pytest.mark.parametrize("shape,e_lambda", [((2, 3, 5, 4), 1e-4), ((1, 4, 2, 1), 1e-4), ((2, 2, 3, 3), 0.5)])
def test_simam_matches_closed_form(shape, e_lambda):
    x = _randn(*shape)
    y = SimAM(shape[1], e_lambda=e_lambda)(x)
    np.testing.assert_allclose(y.numpy(), _simam_numpy(x.numpy(), e_lambda), rtol=1e-12, atol=1e-14)


def test_simam_is_not_the_n_equals_hw_variant():
    x = _randn(2, 3, 3, 3)
    y = SimAM(3)(x).numpy()
    trap = _simam_numpy(x.numpy(), 1e-4, n_trap=True)
    assert np.abs(y - trap).max() > 1e-3


def test_simam_on_1x1_is_finite_x_sigmoid_half():
    x = _randn(4, 8, 1, 1, dtype=torch.float32)
    y = SimAM(8)(x)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y, x * torch.sigmoid(torch.tensor(0.5)))


def test_simam_has_no_parameters_and_a_gate():
    m = SimAM(16)
    assert list(m.parameters()) == []
    assert isinstance(m.gate, nn.Sigmoid)


# --------------------------------------------------------------------------------------------------
# Constructor validation
# --------------------------------------------------------------------------------------------------

_BAD_LAYERS = [
    (nn.ReLU(), r"not an instance \(ReLU\)"),
    (int, r"must be an nn.Module class or a factory"),
    ("sigmoid", r"must be an nn.Module class or a factory"),
    (lambda: 3, r"returned int, not an nn.Module"),
]


@pytest.mark.parametrize(
    "cls,kwargs,match",
    [
        (SE, {"channels": 0}, r"^channels must be >= 1, got 0"),
        (SE, {"channels": 16.0}, r"^channels must be an integer"),
        (SE, {"channels": True}, r"^channels must be an integer"),
        (SE, {"channels": 16, "rd_ratio": 0}, r"^rd_ratio must lie in \(0, 1\], got 0"),
        (SE, {"channels": 16, "rd_ratio": 1.5}, r"^rd_ratio must lie in"),
        (SE, {"channels": 16, "rd_ratio": float("nan")}, r"^rd_ratio must be a finite number"),
        (SE, {"channels": 16, "rd_channels": 0}, r"^rd_channels must be >= 1, got 0"),
        (SE, {"channels": 16, "rd_channels": 2.0}, r"^rd_channels must be an integer"),
        (ECA, {"channels": -1}, r"^channels must be >= 1, got -1"),
        (ECA, {"channels": 16, "kernel_size": 4}, r"^kernel_size must be odd .*got 4"),
        (ECA, {"channels": 16, "kernel_size": 0}, r"^kernel_size must be >= 1, got 0"),
        (ECA, {"channels": 16, "gamma": 0}, r"^gamma must lie in \(0, inf\)"),
        (ECA, {"channels": 16, "b": float("inf")}, r"^b must be a finite number"),
        (CBAM, {"channels": 0}, r"^channels must be >= 1"),
        (CBAM, {"channels": 16, "rd_ratio": -0.1}, r"^rd_ratio must lie in"),
        (CBAM, {"channels": 16, "rd_channels": -2}, r"^rd_channels must be >= 1"),
        (CBAM, {"channels": 16, "spatial_kernel_size": 6}, r"^spatial_kernel_size must be odd .*got 6"),
        (CBAM, {"channels": 16, "spatial_kernel_size": "7"}, r"^spatial_kernel_size must be an integer"),
        (CoordAtt, {"channels": 0}, r"^channels must be >= 1"),
        (CoordAtt, {"channels": 16, "rd_ratio": 2}, r"^rd_ratio must lie in"),
        (CoordAtt, {"channels": 16, "rd_channels": 0}, r"^rd_channels must be >= 1"),
        (CoordAtt, {"channels": 16, "min_channels": 0}, r"^min_channels must be >= 1, got 0"),
        (SimAM, {"channels": 0}, r"^channels must be >= 1"),
        (SimAM, {"channels": 8, "e_lambda": 0}, r"^e_lambda must lie in \(0, inf\), got 0"),
        (SimAM, {"channels": 8, "e_lambda": "1e-4"}, r"^e_lambda must be a finite number"),
    ],
)
def test_constructor_errors(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


@pytest.mark.parametrize("layer,match", _BAD_LAYERS, ids=["instance", "not-a-module", "string", "factory"])
@pytest.mark.parametrize(
    "cls,arg",
    [(SE, "act_layer"), (SE, "gate_layer"), (ECA, "gate_layer"), (CBAM, "act_layer"), (CBAM, "gate_layer")]
    + [(CoordAtt, "act_layer"), (CoordAtt, "gate_layer")],
)
def test_layer_arguments_are_validated(cls, arg, layer, match):
    with pytest.raises(ValueError, match=rf"^{arg}\b.*{match}"):
        cls(16, **{arg: layer})


def test_make_layer_accepts_class_and_factory():
    assert isinstance(make_layer("act_layer", nn.SiLU), nn.SiLU)
    act = make_layer("act_layer", lambda: nn.LeakyReLU(0.2))
    assert isinstance(act, nn.LeakyReLU) and act.negative_slope == 0.2
