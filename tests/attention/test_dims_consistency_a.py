"""HAM, CBAM, SCSA and triplet attention in 1-D and 3-D: consistency with 2-D, independent formulations.

Consistency: on a map with one row ``(B, C, 1, L)`` the 2-D module is the 1-D module whose kernel is the
middle row of the 2-D kernel (with zero padding the other rows only ever see zeros), and on a depth-1
volume the 3-D module is the 2-D module whose kernel is the middle depth slice. That holds exactly for
HAM and CBAM. It does not for SCSA (the length-1 axis's sequence becomes a per-channel sigmoid gate the
smaller dimension lacks; with ``gate_layer='softmax'`` that gate is exactly 1 and the relation holds) nor
for triplet attention (the branch that pools the length-1 axis adds a term of its own:
``3·out_2D = 2·out_1D + y_hc`` and ``4·out_3D = 3·out_2D + y_dc``). Every relation below is checked in
float64, in train and eval mode, with random parameters and BatchNorm statistics.

Independent formulations (written here from the papers' equations, sample by sample, with convolutions as
explicit sums over kernel offsets): HAM, SCSA and triplet attention in 1-D and 3-D, forward and backward.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

import plugattn
from tests.attention.test_matrix import randomize

F64 = torch.float64
EXACT = {"rtol": 1e-10, "atol": 1e-12}
GRAD = {"rtol": 1e-9, "atol": 1e-11}
BN_EPS = 1e-5  # every BatchNorm and GroupNorm here keeps PyTorch's default eps
MODES = pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def correlate(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """'Same' cross-correlation with zero padding in any number of axes, as a sum over kernel offsets.

    ``x`` ``(B, I, *S)``, ``weight`` ``(O, I, *K)`` with odd ``K`` → ``(B, O, *S)``.
    """
    kernel, sizes = weight.shape[2:], x.shape[2:]
    pads = [p for k in reversed(kernel) for p in (k // 2, k // 2)]
    xp = F.pad(x, pads)
    out = x.new_zeros(x.shape[0], weight.shape[0], *sizes)
    for offset in itertools.product(*(range(k) for k in kernel)):
        window = xp[
            (slice(None), slice(None), *(slice(o, o + n) for o, n in zip(offset, sizes, strict=True)))
        ]
        out = out + torch.einsum("bi...,oi->bo...", window, weight[(slice(None), slice(None), *offset)])
    return out


def batch_norm(s: torch.Tensor, bn: torch.nn.Module, training: bool) -> torch.Tensor:
    """One-channel BatchNorm by hand: batch statistics in training, running statistics in eval."""
    if training:
        mean, var = s.mean(), s.var(unbiased=False)
    else:
        mean, var = bn.running_mean, bn.running_var
    return (s - mean) / torch.sqrt(var + BN_EPS) * bn.weight + bn.bias


def middle(weight: torch.Tensor) -> torch.Tensor:
    """A kernel's middle slice along its first spatial axis: ``(O, I, k, ...)`` → ``(O, I, ...)``."""
    return weight[:, :, weight.shape[2] // 2]


def grad_of(module: torch.nn.Module, x: torch.Tensor, probe_seed: int = 9):
    x = x.detach().clone().requires_grad_()
    y = module(x)
    (y * randn(*y.shape, seed=probe_seed)).sum().backward()
    return y.detach(), x.grad


# ------------------------------------------------------------------------------- HAM and CBAM vs 2-D


def ham(d: int, **kw) -> plugattn.HAM:
    return randomize(plugattn.HAM(16, spatial_kernel_size=5, spatial_dims=d, **kw), seed=d).double()


def cbam(d: int, **kw) -> plugattn.CBAM:
    return randomize(plugattn.CBAM(32, spatial_kernel_size=5, spatial_dims=d, **kw), seed=d).double()


def lower(small: torch.nn.Module, big: torch.nn.Module) -> None:
    """Give ``small`` (one spatial axis fewer) the weights of ``big``: the spatial kernel's middle slice
    along the first spatial axis, 1×1 convs without that axis, every other tensor as it is."""
    sd = {}
    for key, value in big.state_dict().items():
        if key == "spatial.conv.weight":
            value = middle(value)
        elif key.startswith("channel.fc") and key.endswith("weight"):
            value = value[:, :, 0]
        sd[key] = value
    small.load_state_dict(sd)


def assert_lowered_equal(small, big, x_small: torch.Tensor, training: bool) -> None:
    """``big`` on ``x_small`` with a length-1 axis in front of its spatial axes equals ``small`` on
    ``x_small``: output, input gradient, parameter gradients, BatchNorm statistics, and (no autograd)
    inference output."""
    small.train(training)
    big.train(training)
    y_s, g_s = grad_of(small, x_small)
    y_b, g_b = grad_of(big, x_small.unsqueeze(2))
    torch.testing.assert_close(y_b.squeeze(2), y_s, **EXACT)
    torch.testing.assert_close(g_b.squeeze(2), g_s, **GRAD)
    for (name, p_s), p_b in zip(small.named_parameters(), big.parameters(), strict=True):
        expected = p_b.grad[:, :, p_b.shape[2] // 2] if name == "spatial.conv.weight" else p_b.grad
        torch.testing.assert_close(p_s.grad, expected.reshape(p_s.shape), **GRAD, msg=name)
    for b_s, b_b in zip(small.buffers(), big.buffers(), strict=True):
        torch.testing.assert_close(b_s, b_b, **EXACT)
    with torch.no_grad():
        torch.testing.assert_close(big(x_small.unsqueeze(2)).squeeze(2), small(x_small), **EXACT)


@MODES
@pytest.mark.parametrize("make", [ham, cbam], ids=["ham", "cbam"])
def test_2d_on_one_row_equals_1d_with_the_middle_row(make, training):
    two, one = make(2), make(1)
    lower(one, two)
    x = randn(3, two.channels, 11)
    assert_lowered_equal(one, two, x, training)
    # Given another row of the kernel the 1-D form differs: the check sees which row counts.
    with torch.no_grad():
        one.spatial.conv.weight.copy_(two.spatial.conv.weight[:, :, 0])
    assert (one.eval()(x) - two.eval()(x.unsqueeze(2)).squeeze(2)).abs().max() > 1e-3


@MODES
@pytest.mark.parametrize("make", [ham, cbam], ids=["ham", "cbam"])
def test_3d_on_one_slice_equals_2d_with_the_middle_slice(make, training):
    three, two = make(3), make(2)
    assert not torch.equal(middle(three.spatial.conv.weight), two.spatial.conv.weight)
    lower(two, three)  # three's other depth slices stay random
    x = randn(2, three.channels, 6, 5)
    assert_lowered_equal(two, three, x, training)


# ------------------------------------------------------------------------ HAM: the equations, in N-D


def important_size(channels: int, p: int, q: int) -> int:
    """Step 5 in integers: t = ⌊p·C / q⌋ for λ = p/q, rounded up to even."""
    t = p * channels // q
    return t + t % 2


def ham_reference(m: plugattn.HAM, x: torch.Tensor, training: bool, rate: tuple[int, int]) -> torch.Tensor:
    """HAM's Eqs. 1-10 for ``(B, C, *S)``, sample by sample with index lists, no custom autograd."""
    b, c = x.shape[:2]
    c_im = important_size(c, *rate)
    kernel = m.channel.conv.weight.reshape(-1)
    k = kernel.numel()
    refined, groups, pre = [], [], ([], [])
    for i in range(b):
        xi = x[i].reshape(c, -1)  # (C, N)
        f_avg, f_max = xi.mean(dim=1), xi.max(dim=1).values
        f_add = 0.5 * (f_avg + f_max)
        if m.channel.adaptive:
            f_add = f_add + m.channel.alpha * f_avg + m.channel.beta * f_max
        padded = torch.cat([f_add.new_zeros(k // 2), f_add, f_add.new_zeros(k // 2)])
        a_c = torch.sigmoid(torch.stack([(padded[j : j + k] * kernel).sum() for j in range(c)]))
        fi = x[i] * a_c.reshape(c, *[1] * (x.dim() - 2))
        order = sorted(range(c), key=lambda j: -float(a_c[j].detach()))
        imp, sub = sorted(order[:c_im]), sorted(order[c_im:])
        for slot, idx in enumerate((imp, sub)):
            part = fi[idx]
            mx = part.max(dim=0).values.clamp(min=0)  # the other group's zeros take part in the max
            pre[slot].append(torch.stack([part.sum(dim=0) / len(idx), mx])[None])  # (1, 2, *S)
        refined.append(fi)
        groups.append((imp, sub))
    norms = (m.spatial.norm_important, m.spatial.norm_subimportant)
    maps = [
        torch.sigmoid(torch.relu(batch_norm(correlate(torch.cat(d), m.spatial.conv.weight), bn, training)))
        for d, bn in zip(pre, norms, strict=True)
    ]
    out = []
    for i, (imp, sub) in enumerate(groups):
        oi = torch.empty_like(refined[i])
        oi[imp] = refined[i][imp] * maps[0][i]
        oi[sub] = refined[i][sub] * maps[1][i]
        out.append(oi)
    return torch.stack(out)


HAM_CASES = [
    (16, (3, 11), {}, (3, 5)),
    (24, (2, 5), {"separation_rate": 0.5, "spatial_kernel_size": 3}, (1, 2)),
    (32, (2, 1), {"adaptive": False}, (3, 5)),
    (16, (2, 3, 4, 5), {"spatial_kernel_size": 3}, (3, 5)),
    (20, (2, 2, 3, 3), {"separation_rate": 0.7}, (7, 10)),
    (16, (3, 1, 1, 2), {"adaptive": False, "spatial_kernel_size": 3}, (3, 5)),
]


@MODES
@pytest.mark.parametrize("channels,shape,kwargs,rate", HAM_CASES)
def test_ham_matches_the_equations(channels, shape, kwargs, rate, training):
    d = len(shape) - 1
    m = randomize(plugattn.HAM(channels, spatial_dims=d, **kwargs)).double().train(training)
    ref = randomize(plugattn.HAM(channels, spatial_dims=d, **kwargs)).double().train(training)
    ref.load_state_dict(m.state_dict())
    x = randn(shape[0], channels, *shape[1:], seed=4)
    y, gx = grad_of(m, x)
    y_ref, gx_ref = grad_of(lambda t: ham_reference(ref, t, training, rate), x)
    torch.testing.assert_close(y, y_ref, **EXACT)
    torch.testing.assert_close(gx, gx_ref, **GRAD)
    for (name, p), p_ref in zip(m.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad, p_ref.grad, **GRAD, msg=name)
    # The inference path (no autograd; channels_last_3d for volumes) computes the same function.
    x_fast = x.contiguous(memory_format=torch.channels_last_3d) if d == 3 else x
    with torch.no_grad():
        torch.testing.assert_close(m(x_fast), ham_reference(ref, x, training, rate), **EXACT)


# -------------------------------------------------------------------------------------------- SCSA

SMSA_CONVS = ("local_dwc", "global_dwc_s", "global_dwc_m", "global_dwc_l")
AXIS_NORMS = {1: ("norm_w",), 2: ("norm_h", "norm_w"), 3: ("norm_d", "norm_h", "norm_w")}


def group_norm(t: torch.Tensor, groups: int, norm: torch.nn.GroupNorm) -> torch.Tensor:
    b, c = t.shape[:2]
    g = t.reshape(b, groups, -1)
    g = (g - g.mean(2, keepdim=True)) / torch.sqrt(g.var(2, unbiased=False, keepdim=True) + BN_EPS)
    affine = (c, *[1] * (t.dim() - 2))
    return g.reshape(t.shape) * norm.weight.reshape(affine) + norm.bias.reshape(affine)


def smsa_gates(m: plugattn.SCSA, x: torch.Tensor, gate: str) -> list[torch.Tensor]:
    """One ``(B, C, n)`` gate per spatial axis: that axis's sequence (the mean over the other spatial
    axes), each channel group through its own conv, the axis's GroupNorm(4), the gate."""
    g = x.shape[1] // 4
    gates = []
    for axis, norm in zip(range(2, x.dim()), AXIS_NORMS[x.dim() - 2], strict=True):
        others = [a for a in range(2, x.dim()) if a != axis]
        seq = x.mean(dim=others) if others else x
        parts = []
        for i, name in enumerate(SMSA_CONVS):
            conv = getattr(m, name)
            depthwise = torch.eye(g, dtype=x.dtype)[:, :, None] * conv.weight  # (G, G, k), diagonal
            parts.append(correlate(seq[:, i * g : (i + 1) * g], depthwise) + conv.bias[:, None])
        out = torch.cat(parts, dim=1)  # (B, C, n)
        normed = group_norm(out, 4, getattr(m, norm))
        gates.append(normed.softmax(dim=2) if gate == "softmax" else torch.sigmoid(normed))
    return gates


def scsa_reference(m: plugattn.SCSA, x: torch.Tensor, window: int, mode: str, gate: str) -> torch.Tensor:
    b, c = x.shape[:2]
    sizes = x.shape[2:]
    xs = x
    for i, a in enumerate(smsa_gates(m, x, gate)):
        xs = xs * a.reshape(b, c, *(n if j == i else 1 for j, n in enumerate(sizes)))
    wins = [n if window == -1 else min(window, n) for n in sizes]
    grid = [n // w for n, w in zip(sizes, wins, strict=True)]
    tokens = []
    for cell in itertools.product(*(range(n) for n in grid)):
        block = xs[
            (slice(None), slice(None), *(slice(p * w, (p + 1) * w) for p, w in zip(cell, wins, strict=True)))
        ]
        block = block.reshape(b, c, -1)
        tokens.append(block.amax(2) if mode == "max_pool" and window != -1 else block.mean(2))
    y = group_norm(torch.stack(tokens, dim=2), 1, m.norm)  # (B, C, N)

    def scale(conv: torch.nn.Module) -> torch.Tensor:
        out = y * conv.weight.reshape(c, 1)
        return out if conv.bias is None else out + conv.bias[:, None]

    q, k, v = scale(m.q), scale(m.k), scale(m.v)
    hd = c // m.head_num
    outs = []
    for h in range(m.head_num):
        sl = slice(h * hd, (h + 1) * hd)
        attn = (torch.einsum("bin,bjn->bij", q[:, sl], k[:, sl]) / math.sqrt(hd)).softmax(dim=-1)
        outs.append(torch.einsum("bij,bjn->bin", attn, v[:, sl]))
    o = torch.cat(outs, dim=1).mean(dim=2)  # (B, C)
    a_c = o.softmax(dim=1) if gate == "softmax" else torch.sigmoid(o)
    return xs * a_c.reshape(b, c, *[1] * len(sizes))


SCSA_CASES = [
    (16, (2, 15), {}),
    (16, (2, 5), {"gate_layer": "softmax", "window_size": 2}),
    (32, (2, 12), {"down_sample_mode": "max_pool", "qkv_bias": True, "head_num": 2, "window_size": 5}),
    (16, (2, 3, 4, 5), {"window_size": 2}),
    (16, (2, 2, 8, 7), {}),
    (16, (2, 3, 3, 2), {"window_size": -1, "gate_layer": "softmax"}),
    (32, (2, 4, 4, 6), {"down_sample_mode": "max_pool", "head_num": 4, "window_size": 3}),
]


@MODES
@pytest.mark.parametrize("channels,shape,kwargs", SCSA_CASES)
def test_scsa_matches_an_independent_formulation(channels, shape, kwargs, training):
    d = len(shape) - 1
    m = randomize(plugattn.SCSA(channels, spatial_dims=d, **kwargs)).double().train(training)
    x = randn(shape[0], channels, *shape[1:], seed=5)
    options = [kwargs.get("window_size", 7), kwargs.get("down_sample_mode", "avg_pool")]
    gate = kwargs.get("gate_layer", "sigmoid")
    with plugattn.capture_attention_maps(m) as maps:
        y, gx = grad_of(m, x)
    grads = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad()
    y_ref, gx_ref = grad_of(lambda t: scsa_reference(m, t, *options, gate), x)
    torch.testing.assert_close(y, y_ref, **EXACT)
    torch.testing.assert_close(gx, gx_ref, **GRAD)
    for name, p in m.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, **GRAD, msg=name)
    # The per-axis gates, as the hooks see them: (B, C, D), (B, C, H), (B, C, W) for a volume.
    with torch.no_grad():
        expected = smsa_gates(m, x, gate)
    assert [t.shape for t in maps["spatial.gate"]] == [(shape[0], channels, n) for n in shape[1:]]
    for got, want in zip(maps["spatial.gate"], expected, strict=True):
        torch.testing.assert_close(got, want, **EXACT)


def lower_scsa(small: plugattn.SCSA, big: plugattn.SCSA) -> None:
    """``small`` gets ``big``'s weights; the 1×1 q/k/v lose an axis, the extra axis's norm is dropped."""
    shapes = {k: v.shape for k, v in small.state_dict().items()}
    small.load_state_dict({k: v.reshape(shapes[k]) for k, v in big.state_dict().items() if k in shapes})


@MODES
@pytest.mark.parametrize("dims", [(2, 1), (3, 2)], ids=["2d-vs-1d", "3d-vs-2d"])
def test_scsa_length_one_axis_is_a_gate_of_its_own(dims, training):
    """With the softmax gate the length-1 axis's gate is a softmax over one position, exactly 1, and the
    bigger module equals the smaller one; with the sigmoid gate it is σ(GN(·)) per channel, and not."""
    big_d, small_d = dims
    shape = (2, 16, 9, 7)[: small_d + 2]
    x = randn(*shape, seed=6)
    for gate, equal in (("softmax", True), ("sigmoid", False)):
        big = randomize(plugattn.SCSA(16, window_size=3, gate_layer=gate, spatial_dims=big_d)).double()
        small = plugattn.SCSA(16, window_size=3, gate_layer=gate, spatial_dims=small_d).double()
        lower_scsa(small, big)
        big.train(training)
        small.train(training)
        y_b, g_b = grad_of(big, x.unsqueeze(2))
        y_s, g_s = grad_of(small, x)
        if equal:
            torch.testing.assert_close(y_b.squeeze(2), y_s, **EXACT)
            torch.testing.assert_close(g_b.squeeze(2), g_s, **GRAD)
        else:
            assert (y_b.squeeze(2) - y_s).abs().max() > 1e-3


# ----------------------------------------------------------------------------------------- triplet

# The axis of x each branch rotates into the pooled position (1: the spatial branch pools C itself).
TRIPLET_AXES = {
    1: {"cw": 2, "hw": 1},
    2: {"hc": 2, "cw": 3, "hw": 1},
    3: {"dc": 2, "hc": 3, "cw": 4, "hw": 1},
}


def triplet_branch(branch, x: torch.Tensor, axis: int, training: bool) -> torch.Tensor:
    """Rotate ``axis`` into the channel position, Z-pool it, conv + BN + sigmoid, multiply, rotate back."""
    xr = x.transpose(1, axis)
    z = torch.cat([xr.max(dim=1, keepdim=True).values, xr.mean(dim=1, keepdim=True)], dim=1)
    a = torch.sigmoid(batch_norm(correlate(z, branch.conv.weight), branch.bn, training))
    return (xr * a).transpose(1, axis)


def triplet_reference(m, x: torch.Tensor, training: bool) -> torch.Tensor:
    branches = {name: getattr(m, name) for name in TRIPLET_AXES[x.dim() - 2]}
    axes = TRIPLET_AXES[x.dim() - 2]
    outs = [triplet_branch(b, x, axes[name], training) for name, b in branches.items() if b is not None]
    return sum(outs) / len(outs)


@MODES
@pytest.mark.parametrize("no_spatial", [False, True], ids=["all", "no_spatial"])
@pytest.mark.parametrize("shape", [(2, 6, 9), (3, 5, 1), (2, 4, 3, 5, 6), (2, 3, 1, 4, 2)])
def test_triplet_matches_the_rotation_reference(shape, no_spatial, training):
    d = len(shape) - 2
    m = randomize(plugattn.TripletAttention(shape[1], kernel_size=3, no_spatial=no_spatial, spatial_dims=d))
    m = m.double().train(training)
    assert {n for n, _ in m.named_children()} == set(TRIPLET_AXES[d]) - ({"hw"} if no_spatial else set())
    x = randn(*shape, seed=7)
    y, gx = grad_of(m, x)
    y_ref, gx_ref = grad_of(lambda t: triplet_reference(m, t, training), x)
    torch.testing.assert_close(y, y_ref, **EXACT)
    torch.testing.assert_close(gx, gx_ref, **GRAD)


@MODES
@pytest.mark.parametrize("dims", [(2, 1), (3, 2)], ids=["2d-vs-1d", "3d-vs-2d"])
def test_triplet_length_one_axis_adds_one_branch(dims, training):
    """(d+1)·out_big = d·out_small + y_extra: the big module's branches other than the one that pools the
    length-1 axis equal the small module's, given the kernels' middle slices."""
    big_d, small_d = dims
    big = randomize(plugattn.TripletAttention(8, kernel_size=5, spatial_dims=big_d), seed=2).double()
    small = plugattn.TripletAttention(8, kernel_size=5, spatial_dims=small_d).double()
    extra = "hc" if big_d == 2 else "dc"
    kept = {k: v for k, v in big.state_dict().items() if not k.startswith(f"{extra}.")}
    small.load_state_dict({k: middle(v) if k.endswith("conv.weight") else v for k, v in kept.items()})
    big.train(training)
    small.train(training)
    x = randn(*(2, 8, 6, 5)[: small_d + 2], seed=8)
    y_big, g_big = grad_of(big, x.unsqueeze(2))
    y_small, g_small = grad_of(small, x)
    y_extra, g_extra = grad_of(lambda t: triplet_branch(getattr(big, extra), t, 2, training), x.unsqueeze(2))
    torch.testing.assert_close((big_d + 1) * y_big - y_extra, (small_d + 1) * y_small.unsqueeze(2), **EXACT)
    torch.testing.assert_close((big_d + 1) * g_big - g_extra, (small_d + 1) * g_small.unsqueeze(2), **GRAD)
    assert (y_big.squeeze(2) - y_small).abs().max() > 1e-3  # the extra branch does change the output


# ------------------------------------------------------------------------------ state dicts, errors

NORM = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
HAM_KEYS = {"channel.alpha", "channel.beta", "channel.conv.weight", "spatial.conv.weight"} | {
    f"spatial.{n}.{p}" for n in ("norm_important", "norm_subimportant") for p in NORM
}
CBAM_KEYS = {f"channel.fc{i}.{p}" for i in (1, 2) for p in ("weight", "bias")} | {
    "spatial.conv.weight",
    *(f"spatial.bn.{p}" for p in NORM),
}
SCSA_2D_KEYS = {f"{n}.{p}" for n in (*SMSA_CONVS, "norm_h", "norm_w", "norm") for p in ("weight", "bias")} | {
    "q.weight",
    "k.weight",
    "v.weight",
}


def triplet_keys(branches: tuple[str, ...]) -> set[str]:
    return {f"{b}.conv.weight" for b in branches} | {f"{b}.bn.{p}" for b in branches for p in NORM}


@pytest.mark.parametrize("d", [1, 2, 3])
def test_state_dict_keys_and_kernel_shapes(d):
    k = (7,) * d
    assert set(plugattn.HAM(64, spatial_dims=d).state_dict()) == HAM_KEYS
    assert set(plugattn.CBAM(64, spatial_dims=d).state_dict()) == CBAM_KEYS
    ham_sd = plugattn.HAM(64, spatial_dims=d).state_dict()
    assert ham_sd["spatial.conv.weight"].shape == (1, 2, *k)
    assert ham_sd["channel.conv.weight"].shape == (1, 1, 3)
    cbam_sd = plugattn.CBAM(64, spatial_dims=d).state_dict()
    assert cbam_sd["spatial.conv.weight"].shape == (1, 2, *k)
    assert cbam_sd["channel.fc1.weight"].shape == (4, 64, *[1] * d)
    scsa = {
        1: SCSA_2D_KEYS - {"norm_h.weight", "norm_h.bias"},
        2: SCSA_2D_KEYS,
        3: SCSA_2D_KEYS | {"norm_d.weight", "norm_d.bias"},
    }
    scsa_sd = plugattn.SCSA(64, spatial_dims=d).state_dict()
    assert set(scsa_sd) == scsa[d]
    assert scsa_sd["q.weight"].shape == (64, 1, *[1] * d) and scsa_sd["local_dwc.weight"].shape == (16, 1, 3)
    assert sum(v.numel() for v in scsa_sd.values()) == 16 * 64 + (d - 2) * 2 * 64
    triplet = {1: ("cw", "hw"), 2: ("hc", "cw", "hw"), 3: ("dc", "hc", "cw", "hw")}[d]
    tri = plugattn.TripletAttention(16, spatial_dims=d)
    assert set(tri.state_dict()) == triplet_keys(triplet)
    assert sum(p.numel() for p in tri.parameters()) == (d + 1) * (2 * 7**d + 2)


@pytest.mark.parametrize("name", ["ham", "cbam", "scsa", "triplet"])
def test_spatial_dims_is_validated_and_the_input_checked(name):
    for bad in (0, 4, "2", True, 2.0):
        with pytest.raises(ValueError, match=rf"spatial_dims must be 1, 2 or 3, got {bad!r}"):
            plugattn.attention_entry(name).cls(16, spatial_dims=bad)
    m = plugattn.create_attention(name, 16, spatial_dims=1)
    assert m.spatial_dims == 1
    with pytest.raises(ValueError, match=r"expects a \(B, C, L\) sequence; got a 4-D tensor.*spatial_dims=2"):
        m(torch.randn(2, 16, 4, 4))
    m3 = plugattn.create_attention(name, 16, spatial_dims=3)
    assert m3(torch.randn(2, 16, 2, 3, 4)).shape == (2, 16, 2, 3, 4)
