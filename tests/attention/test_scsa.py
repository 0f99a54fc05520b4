"""SCSA against an independent formulation in the reference's structure, known answers, errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import plugattn
from tests.attention.test_matrix import randomize

NORM_EPS = 1e-5  # the authors' GroupNorms (norm_h, norm_w, norm) keep PyTorch's default eps

CONV_NAMES = ("local_dwc", "global_dwc_s", "global_dwc_m", "global_dwc_l")


def scsa_reference(m: plugattn.SCSA, x: torch.Tensor, window_size: int, mode: str, gate: str):
    """SCSA written the way the paper draws it: per group and per direction separate convs, explicit
    window pooling by loops, per-head attention, the positional mean taken after ``attn @ v``."""
    b, c, h, w = x.shape
    g = c // 4
    spatial_gate = (lambda t: t.softmax(dim=2)) if gate == "softmax" else torch.sigmoid
    channel_gate = (lambda t: t.softmax(dim=1)) if gate == "softmax" else torch.sigmoid

    def direction(seq: torch.Tensor, norm: torch.nn.GroupNorm) -> torch.Tensor:
        parts = []
        for i, name in enumerate(CONV_NAMES):
            conv = getattr(m, name)
            k = conv.kernel_size[0]
            chunk = seq[:, i * g : (i + 1) * g]
            parts.append(F.conv1d(chunk, conv.weight, conv.bias, padding=k // 2, groups=g))
        out = torch.cat(parts, dim=1)  # (B, C, L)
        # GroupNorm(4) by hand: statistics per sample over each quarter of the channels.
        grouped = out.reshape(b, 4, -1)
        mean = grouped.mean(dim=2, keepdim=True)
        var = grouped.var(dim=2, unbiased=False, keepdim=True)
        normed = ((grouped - mean) / torch.sqrt(var + NORM_EPS)).reshape_as(out)
        return spatial_gate(normed * norm.weight[:, None] + norm.bias[:, None])

    a_h = direction(x.mean(dim=3), m.norm_h)  # (B, C, H)
    a_w = direction(x.mean(dim=2), m.norm_w)  # (B, C, W)
    xs = x * a_h[:, :, :, None] * a_w[:, :, None, :]

    if window_size == -1:
        wh, ww = h, w
    else:
        wh, ww = min(window_size, h), min(window_size, w)
    rows, cols = h // wh, w // ww
    pooled = torch.empty(b, c, rows, cols, dtype=x.dtype)
    for r in range(rows):
        for q in range(cols):
            win = xs[:, :, r * wh : (r + 1) * wh, q * ww : (q + 1) * ww].reshape(b, c, -1)
            pooled[:, :, r, q] = win.amax(dim=2) if mode == "max_pool" and window_size != -1 else win.mean(2)
    n = rows * cols
    flat = pooled.reshape(b, -1)
    y = (flat - flat.mean(1, keepdim=True)) / torch.sqrt(flat.var(1, unbiased=False, keepdim=True) + NORM_EPS)
    y = y.reshape(b, c, n) * m.norm.weight[:, None] + m.norm.bias[:, None]

    def scale(conv: torch.nn.Conv2d) -> torch.Tensor:
        out = y * conv.weight.reshape(c, 1)
        return out if conv.bias is None else out + conv.bias[:, None]

    q_all, k_all, v_all = scale(m.q), scale(m.k), scale(m.v)  # (B, C, N)
    heads, hd = m.head_num, c // m.head_num
    outs = []
    for head in range(heads):
        sl = slice(head * hd, (head + 1) * hd)
        logits = torch.einsum("bin,bjn->bij", q_all[:, sl], k_all[:, sl]) / math.sqrt(hd)
        attn = m.attn_drop(logits.softmax(dim=-1))
        outs.append(torch.einsum("bij,bjn->bin", attn, v_all[:, sl]))  # (B, hd, N)
    a_c = channel_gate(torch.cat(outs, dim=1).mean(dim=2)[:, :, None, None])
    return a_c * xs


CONFIGS = [
    (16, (2, 8, 8), {}),
    (32, (2, 15, 10), {}),  # windows 7x7 over a non-square map: 2x1 tokens, floor mode
    (64, (2, 14, 14), {"head_num": 2}),  # 4 tokens, 2 heads
    (16, (2, 1, 1), {}),  # smaller than the window
    (32, (3, 6, 9), {"window_size": -1}),
    (32, (2, 16, 12), {"down_sample_mode": "max_pool", "qkv_bias": True, "head_num": 4}),
    (16, (2, 10, 5), {"gate_layer": "softmax", "window_size": 3}),
    (24, (2, 7, 7), {"group_kernel_sizes": (1, 3, 5, 11), "window_size": 2}),
]


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("channels,shape,kwargs", CONFIGS)
def test_matches_independent_formulation(channels, shape, kwargs, training):
    torch.manual_seed(0)
    m = randomize(plugattn.SCSA(channels, **kwargs)).double().train(training)
    x = torch.randn(shape[0], channels, *shape[1:], dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    y = m(x)
    y_ref = scsa_reference(
        m,
        x_ref,
        kwargs.get("window_size", 7),
        kwargs.get("down_sample_mode", "avg_pool"),
        kwargs.get("gate_layer", "sigmoid"),
    )
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)
    probe = torch.randn(x.shape, dtype=torch.float64)
    (y * probe).sum().backward()
    grads = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad()
    (y_ref * probe).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-9, atol=1e-11)
    for name, p in m.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, rtol=1e-9, atol=1e-11, msg=name)


def test_attention_dropout_in_training_matches_reference():
    m = randomize(plugattn.SCSA(32, attn_drop_ratio=0.5)).double().train()
    x = torch.randn(2, 32, 14, 14, dtype=torch.float64)
    torch.manual_seed(7)
    y = m(x)
    torch.manual_seed(7)
    y_ref = scsa_reference(m, x, 7, "avg_pool", "sigmoid")
    torch.testing.assert_close(y, y_ref)
    m.eval()  # eval: no dropout, deterministic
    torch.testing.assert_close(m(x), m(x))


def test_small_map_equals_global_pooling_variant():
    """On a 6x6 map the 7x7 window does not fit: the module must equal the global variant (which the
    reference runs), not crash as the reference does."""
    local = randomize(plugattn.SCSA(64)).eval()
    glob = plugattn.SCSA(64, window_size=-1).eval()
    glob.load_state_dict(local.state_dict())
    x = torch.randn(2, 64, 6, 6)
    torch.testing.assert_close(local(x), glob(x), rtol=1e-6, atol=1e-7)  # pool vs mean: rounding only


def test_state_dict_keys_match_the_reference():
    keys = [
        *(f"{n}.{p}" for n in CONV_NAMES for p in ("weight", "bias")),
        *(f"{n}.{p}" for n in ("norm_h", "norm_w", "norm") for p in ("weight", "bias")),
        "q.weight",
        "k.weight",
        "v.weight",
    ]
    m = plugattn.SCSA(64)
    assert sorted(m.state_dict()) == sorted(keys)
    assert list(m.buffers()) == []
    assert sum(p.numel() for p in m.parameters()) == 16 * 64
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes["global_dwc_l.weight"] == (16, 1, 9) and shapes["q.weight"] == (64, 1, 1, 1)


def test_kernel_sizes_are_the_authors_in_their_order():
    """The authors' group_kernel_sizes = [3, 5, 7, 9] go to local_dwc, global_dwc_s, _m, _l in that order:
    a swapped order passes every functional test yet cannot load the authors' checkpoints."""
    shapes = {k: tuple(v.shape) for k, v in plugattn.SCSA(64).state_dict().items()}
    assert {n: shapes[f"{n}.weight"] for n in CONV_NAMES} == {
        "local_dwc": (16, 1, 3),
        "global_dwc_s": (16, 1, 5),
        "global_dwc_m": (16, 1, 7),
        "global_dwc_l": (16, 1, 9),
    }
    biased = plugattn.SCSA(64, qkv_bias=True).state_dict()
    assert {"q.bias", "k.bias", "v.bias"} <= set(biased)


def test_reference_initialisation():
    torch.manual_seed(0)
    m = plugattn.SCSA(1024)
    for name in ("q", "k", "v"):
        std = getattr(m, name).weight.std().item()
        assert abs(std - math.sqrt(2 / 1024)) < 0.1 * math.sqrt(2 / 1024), (name, std)  # fan_out, ReLU
    for name in ("norm_h", "norm_w", "norm"):
        norm = getattr(m, name)
        assert torch.equal(norm.weight, torch.ones(1024)) and torch.equal(norm.bias, torch.zeros(1024))
    bound = 1 / math.sqrt(3)  # Conv1d default: U(-1/sqrt(fan_in), ...), fan_in = k for depthwise
    assert m.local_dwc.weight.abs().max() <= bound


def test_spatial_and_channel_maps_are_observable():
    m = plugattn.SCSA(32).eval()
    with plugattn.capture_attention_maps(m) as maps:
        m(torch.randn(2, 32, 9, 5))
    a_h, a_w = maps["spatial.gate"]
    assert a_h.shape == (2, 32, 9) and a_w.shape == (2, 32, 5)
    assert maps["channel.gate"][0].shape == (2, 32, 1, 1)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"channels": 6}, r"channels must be divisible by the number of SMSA groups=4, got channels=6"),
        ({"channels": 2}, r"channels must be >= 4"),
        ({"channels": 12, "head_num": 8}, r"channels must be divisible by head_num=8"),
        ({"channels": 16, "head_num": 0}, r"head_num must be >= 1"),
        ({"channels": 16, "window_size": 0}, r"window_size must be a positive window or -1"),
        ({"channels": 16, "window_size": -2}, r"window_size must be >= -1"),
        ({"channels": 16, "down_sample_mode": "recombination"}, r"'recombination' is not supported"),
        ({"channels": 16, "down_sample_mode": "avg"}, r"down_sample_mode must be one of 'avg_pool'"),
        ({"channels": 16, "gate_layer": "relu"}, r"gate_layer must be one of 'sigmoid', 'softmax'"),
        ({"channels": 16, "group_kernel_sizes": (3, 5, 7)}, r"group_kernel_sizes must be a sequence of 4"),
        ({"channels": 16, "group_kernel_sizes": (3, 5, 7, 8)}, r"group_kernel_sizes\[3\] must be odd"),
        ({"channels": 16, "attn_drop_ratio": 1.0}, r"attn_drop_ratio must lie in \[0, 1\)"),
        ({"channels": 16, "qkv_bias": "yes"}, r"qkv_bias must be True or False"),
    ],
)
def test_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plugattn.SCSA(**kwargs)
