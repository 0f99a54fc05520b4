"""HAM against an independent formulation of spec/ham.md, known answers, and its errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import plugattn
from plugattn.attention.ham import ham_important_channels
from tests.attention.test_matrix import randomize

BN_EPS = 1e-5  # spec/ham.md: the two spatial BatchNorms are BatchNorm2d(1) with PyTorch's default eps
# The separation rates the tests use, as exact fractions p/q (spec/ham.md step 5: λ = 0.6 by default).
RATES = {0.6: (3, 5), 0.5: (1, 2), 0.7: (7, 10)}


def important_size(channels: int, rate: float) -> int:
    """spec/ham.md step 5 in integers: t = ⌊p·C / q⌋, rounded up to even."""
    p, q = RATES[rate]
    t = p * channels // q
    return t + t % 2


def ham_reference(
    m: plugattn.HAM, x: torch.Tensor, training: bool, *, rate: float = 0.6, adaptive: bool = True
):
    """HAM written from the equations, sample by sample and group by group with index lists.

    BatchNorm needs the whole batch, so the per-sample loop stops before it and the normalisation is
    written out by hand (batch statistics in training, running statistics in eval). ``adaptive=False`` is
    the paper's "no adaptive" ablation, f_add = ½(f_avg + f_max).
    Returns the output and the maps (a_c per sample, a_s1, a_s2).
    """
    bsz, c, h, w = x.shape
    c_im = important_size(c, rate)
    kernel = m.channel.conv.weight.reshape(-1)
    k = kernel.numel()
    spatial_padding = m.spatial.conv.weight.shape[-1] // 2  # "same" padding of the spatial conv
    pre1, pre2, refined, groups, a_cs = [], [], [], [], []
    for i in range(bsz):
        xi = x[i]  # (C, H, W)
        f_avg = xi.reshape(c, -1).mean(dim=1)
        f_max = xi.reshape(c, -1).max(dim=1).values
        f_add = 0.5 * (f_avg + f_max)
        if adaptive:
            f_add = f_add + m.channel.alpha * f_avg + m.channel.beta * f_max  # Eq. (2)
        padded = torch.cat([f_add.new_zeros(k // 2), f_add, f_add.new_zeros(k // 2)])
        a_c = torch.sigmoid(torch.stack([(padded[j : j + k] * kernel).sum() for j in range(c)]))
        fi = xi * a_c[:, None, None]
        order = sorted(range(c), key=lambda j: -float(a_c[j].detach()))
        imp, sub = sorted(order[:c_im]), sorted(order[c_im:])
        descs = []
        for idx in (imp, sub):
            part = fi[idx]  # only this group's channels
            avg = part.sum(dim=0) / len(idx)
            mx = part.max(dim=0).values.clamp(min=0)  # the other group's zeros take part in the max
            descs.append(torch.stack([avg, mx])[None])  # (1, 2, H, W)
        pre1.append(F.conv2d(descs[0], m.spatial.conv.weight, padding=spatial_padding))
        pre2.append(F.conv2d(descs[1], m.spatial.conv.weight, padding=spatial_padding))
        refined.append(fi)
        groups.append((imp, sub))
        a_cs.append(a_c)

    def batch_norm(s: torch.Tensor, bn: torch.nn.BatchNorm2d) -> torch.Tensor:
        if training:
            mean, var = s.mean(), s.var(unbiased=False)
        else:
            mean, var = bn.running_mean, bn.running_var
        return (s - mean) / torch.sqrt(var + BN_EPS) * bn.weight + bn.bias

    a_s1 = torch.sigmoid(torch.relu(batch_norm(torch.cat(pre1), m.spatial.norm_important)))
    a_s2 = torch.sigmoid(torch.relu(batch_norm(torch.cat(pre2), m.spatial.norm_subimportant)))
    out = []
    for i in range(bsz):
        imp, sub = groups[i]
        oi = torch.empty_like(refined[i])
        oi[imp] = refined[i][imp] * a_s1[i]
        oi[sub] = refined[i][sub] * a_s2[i]
        out.append(oi)
    return torch.stack(out), torch.stack(a_cs), a_s1, a_s2


CONFIGS = [
    (16, (3, 8, 8), {}),
    (32, (2, 9, 5), {}),
    (64, (2, 1, 1), {}),
    (128, (2, 6, 7), {}),
    (24, (2, 5, 5), {"separation_rate": 0.5, "spatial_kernel_size": 3}),
    (40, (2, 4, 6), {"channel_kernel_size": 5, "adaptive": True}),
    (32, (2, 5, 4), {"adaptive": False}),  # the paper's "no adaptive" ablation
    (90, (2, 3, 4), {"separation_rate": 0.7}),  # 0.7 · 90 = 63 exactly → 64 (float arithmetic: 62)
]


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("channels,shape,kwargs", CONFIGS)
def test_matches_independent_formulation(channels, shape, kwargs, training):
    torch.manual_seed(0)
    m = randomize(plugattn.HAM(channels, **kwargs)).double().train(training)
    ref = randomize(plugattn.HAM(channels, **kwargs)).double().train(training)
    ref.load_state_dict(m.state_dict())
    x = torch.randn(shape[0], channels, shape[1], shape[2], dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    probe = torch.randn(x.shape, dtype=torch.float64)

    with plugattn.capture_attention_maps(m) as maps:
        y = m(x)
    options = {"rate": kwargs.get("separation_rate", 0.6), "adaptive": kwargs.get("adaptive", True)}
    y_ref, a_c, a_s1, a_s2 = ham_reference(ref, x_ref, training, **options)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)

    # The maps observable through the gates are the equations' maps.
    torch.testing.assert_close(maps["channel.gate"][0], a_c.detach())
    torch.testing.assert_close(maps["spatial.gate"][0], torch.cat([a_s1, a_s2], dim=1).detach())

    (y * probe).sum().backward()
    (y_ref * probe).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-9, atol=1e-11)
    for (name, p), p_ref in zip(m.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-9, atol=1e-11, msg=name)


def test_running_statistics_follow_batchnorm():
    torch.manual_seed(1)
    m = plugattn.HAM(16).train()
    x = torch.randn(4, 16, 6, 6)
    m(x)
    # The important group's pre-norm map, rebuilt from the equations.
    with torch.no_grad():
        fresh = plugattn.HAM(16)
        fresh.load_state_dict({k: v for k, v in m.state_dict().items() if "running" not in k}, strict=False)
        a_c = fresh.channel(x)
        f = x * a_c[:, :, None, None]
        top = a_c.topk(10, dim=1).indices
        mask = torch.zeros_like(a_c).scatter_(1, top, 1.0)[:, :, None, None]
        f1 = f * mask
        d1 = torch.cat([f1.sum(1, keepdim=True) / 10, f1.amax(1, keepdim=True)], 1)
        s1 = F.conv2d(d1, fresh.spatial.conv.weight, padding=3)
    torch.testing.assert_close(m.spatial.norm_important.running_mean, 0.1 * s1.mean().reshape(1))
    torch.testing.assert_close(m.spatial.norm_important.running_var, 0.9 + 0.1 * s1.var().reshape(1))


@pytest.mark.parametrize(
    "channels,expected",
    [(16, 10), (32, 20), (64, 38), (128, 76), (256, 154), (512, 308), (2048, 1228)],
)
def test_important_group_size_nearest_even(channels, expected):
    assert ham_important_channels(channels, 0.6) == expected
    assert plugattn.HAM(channels).important_channels == expected


@pytest.mark.parametrize("rate,p,q", [(0.1, 1, 10), (0.3, 3, 10), (0.6, 3, 5), (0.7, 7, 10), (0.9, 9, 10)])
def test_important_group_size_is_exact_for_every_width(rate, p, q):
    """λ·C without float error: int(0.7 * 90) is 62 in floats, 63 exactly (→ 64); 36 widths ≤ 4096
    were wrong at 0.7 before the rule used exact arithmetic."""
    for c in range(1, 4097):
        t = p * c // q
        assert ham_important_channels(c, rate) == t + t % 2, c
    assert ham_important_channels(90, 0.7) == 64


@pytest.mark.parametrize("channels,k", [(16, 3), (64, 3), (128, 5), (1024, 5), (2048, 7)])
def test_channel_kernel_follows_eca_rule(channels, k):
    m = plugattn.HAM(channels)
    assert m.channel.conv.weight.shape == (1, 1, k)
    assert sum(p.numel() for p in m.parameters()) == k + 2 + 98 + 4


def test_state_dict_keys_are_the_checkpoint_format():
    sd = plugattn.HAM(64).state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items() if "norm" not in k} == {
        "channel.alpha": (1,),
        "channel.beta": (1,),
        "channel.conv.weight": (1, 1, 3),
        "spatial.conv.weight": (1, 2, 7, 7),
    }
    norm_keys = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}
    for branch in ("norm_important", "norm_subimportant"):
        assert {k.split(".")[-1] for k in sd if k.startswith(f"spatial.{branch}.")} == norm_keys


def test_alpha_beta_init_and_no_adaptive_ablation():
    m = plugattn.HAM(32)
    assert m.channel.alpha.item() == 0.5 and m.channel.beta.item() == 0.5
    plain = plugattn.HAM(32, adaptive=False)
    assert "channel.alpha" not in plain.state_dict()
    with torch.no_grad():
        m.channel.alpha.zero_()
        m.channel.beta.zero_()
    plain.load_state_dict({k: v for k, v in m.state_dict().items() if "alpha" not in k and "beta" not in k})
    x = torch.randn(2, 32, 5, 5)
    torch.testing.assert_close(m.eval()(x), plain.eval()(x))


def test_spatial_maps_lie_in_half_to_one():
    m = randomize(plugattn.HAM(32)).eval()
    with plugattn.capture_attention_maps(m) as maps:
        m(torch.randn(2, 32, 6, 6) * 10)
    a_s = maps["spatial.gate"][0]
    assert a_s.shape == (2, 2, 6, 6)
    assert (a_s >= 0.5).all() and (a_s <= 1).all()


def test_separation_is_per_sample():
    """Two samples whose channel maps rank channels differently get different groups."""
    m = plugattn.HAM(16).eval()
    x = torch.randn(1, 16, 4, 4)
    x2 = torch.cat([x, x.flip(1)])
    with plugattn.capture_attention_maps(m) as maps:
        y = m(x2)
    a_c = maps["channel.gate"][0]
    assert not torch.equal(a_c[0].topk(10).indices.sort().values, a_c[1].topk(10).indices.sort().values)
    torch.testing.assert_close(y[0:1], m(x))


@pytest.mark.parametrize("channels", [16, 64, 256, 2048])
def test_ties_in_a_c_fall_where_a_sorted_topk_puts_them(channels):
    """The groups come from an unsorted top-k (faster); with a_c taking only a few values, so that the
    important group's border falls inside a tie, they are the ones a sorted ``torch.topk`` gives."""
    m = plugattn.HAM(channels)
    torch.manual_seed(0)
    for levels in (2, 3, 7):
        a_c = torch.randint(0, levels, (32, channels)).float() / levels
        w1, w2 = m._separate(a_c)
        top = a_c.topk(m.important_channels, dim=1).indices
        mask = torch.zeros_like(a_c).scatter_(1, top, 1.0)
        assert torch.equal(w1, a_c * mask) and torch.equal(w2, a_c - a_c * mask)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"channels": 2}, r"channels=2 with separation_rate=0.6"),
        ({"channels": 0}, r"channels must be >= 1, got 0"),
        ({"channels": 16.0}, r"channels must be an integer"),
        ({"channels": True}, r"channels must be an integer"),
        ({"channels": 16, "separation_rate": 1.0}, r"separation_rate must lie in \(0, 1\)"),
        ({"channels": 16, "separation_rate": 0}, r"separation_rate must lie in"),
        ({"channels": 16, "separation_rate": "0.6"}, r"separation_rate must be a finite number"),
        ({"channels": 16, "separation_rate": 0.99}, r"important group of 16 channels"),
        ({"channels": 16, "spatial_kernel_size": 4}, r"spatial_kernel_size must be odd"),
        ({"channels": 16, "spatial_kernel_size": 0}, r"spatial_kernel_size must be >= 1"),
        ({"channels": 16, "channel_kernel_size": 2}, r"channel_kernel_size must be odd"),
        ({"channels": 16, "adaptive": 1}, r"adaptive must be True or False"),
        ({"channels": 16, "gamma": 0}, r"gamma must lie in"),
    ],
)
def test_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plugattn.HAM(**kwargs)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("channels,shape,kwargs", CONFIGS)
def test_inference_path_matches_independent_formulation(channels, shape, kwargs, training, layout):
    """Without autograd HAM takes another path (one matrix product for both groups' sums, one reduction
    for both maxima); it computes the same function, in either layout."""
    torch.manual_seed(0)
    m = randomize(plugattn.HAM(channels, **kwargs)).double().train(training)
    ref = randomize(plugattn.HAM(channels, **kwargs)).double().train(training)
    ref.load_state_dict(m.state_dict())
    x = torch.randn(shape[0], channels, shape[1], shape[2], dtype=torch.float64)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        y = m(x)
        options = {"rate": kwargs.get("separation_rate", 0.6), "adaptive": kwargs.get("adaptive", True)}
        y_ref = ham_reference(ref, x, training, **options)[0]
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)
    if training:  # the running statistics move as they do on the autograd path
        with_grad = randomize(plugattn.HAM(channels, **kwargs)).double().train()
        with_grad.load_state_dict(ref.state_dict())
        with_grad(x.detach().clone().requires_grad_())
        for a, b in zip(m.buffers(), with_grad.buffers(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_inference_path_in_bfloat16_follows_the_autograd_path():
    """In bf16 both paths separate the channels alike (the same a_c) and agree to bf16's precision.
    (Against fp32 a near-tie in a_c may fall the other way: HAM's separation is a hard top-k.)"""
    torch.manual_seed(0)
    m = randomize(plugattn.HAM(64)).eval().bfloat16()
    x = torch.randn(4, 64, 9, 9).bfloat16()
    with torch.no_grad():
        fast = m(x)
    slow = m(x.clone().requires_grad_())
    assert fast.dtype == slow.dtype == torch.bfloat16
    torch.testing.assert_close(fast.float(), slow.detach().float(), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("cls", [plugattn.HAM, plugattn.ECA])
def test_eca_rule_parameters_have_names_and_the_old_ones_still_work(cls):
    # k = |(log2 C + offset) / slope|_odd: C = 64 gives 3 with (2, 1); (1, 1) gives 7; (2, 5) gives 5.
    conv = "channel.conv" if cls is plugattn.HAM else "conv"

    def k(m):
        return m.get_submodule(conv).kernel_size[0]

    assert k(cls(64)) == 3
    assert k(cls(64, kernel_slope=1)) == 7
    assert k(cls(64, kernel_offset=5)) == 5
    with pytest.warns(FutureWarning, match=r"gamma=\.\.\.\) is deprecated.*use kernel_slope="):
        assert k(cls(64, gamma=1)) == 7
    with pytest.warns(FutureWarning, match=r"b=\.\.\.\) is deprecated.*use kernel_offset="):
        assert k(cls(64, b=5)) == 5
    with pytest.raises(ValueError, match=r"give kernel_slope=1 or its old name gamma=3, not both"):
        cls(64, kernel_slope=1, gamma=3)
    with pytest.raises(ValueError, match=r"^kernel_slope must lie in \(0, inf\), got 0"):
        cls(64, kernel_slope=0)
    assert plugattn.create_attention(cls.__name__.lower(), 64, kernel_offset=5) is not None
