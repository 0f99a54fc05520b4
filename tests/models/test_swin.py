"""Swin Transformer: counts, forward, training, the attention hook, features, the shifted-window mask, errors.

The numbers are written out here: the layouts are the paper's (Swin-T/S), the counts timm's (which the
closed form below gives too). The shifted windows are checked against the paper's own description of
SW-MSA — the partition displaced by ``⌊M/2⌋``, with smaller windows at the borders — written in this file
without the cyclic shift or the mask.
"""

from __future__ import annotations

import copy
import math
import pickle

import pytest
import torch
from torch import nn

import plugattn
from plugattn.models import SwinTransformer, model_entry
from plugattn.models.swin_block import DropPath, SwinBlock
from tests.models.helpers import count, train_step

NAMES = ["swin_t", "swin_s"]
LAYOUT = {  # embed_dim, depths, heads, window, img_size, stochastic depth
    "swin_t": (96, (2, 2, 6, 2), (3, 6, 12, 24), 7, 224, 0.2),
    "swin_s": (96, (2, 2, 18, 2), (3, 6, 12, 24), 7, 224, 0.3),
}
COUNTS = {"swin_t": 28_288_354, "swin_s": 49_606_258}  # 1000 classes; timm 1.0.31's counts
# Small enough for every test to run in a blink: widths 32/64/128/256, maps 16/8/4/2, windows 4/4/4/2.
SMALL = {"img_size": 64, "window_size": 4, "embed_dim": 32, "depths": (2, 2, 2, 2), "num_heads": (1, 2, 4, 8)}
ATTENTION = plugattn.list_attention()


def small(**kwargs) -> SwinTransformer:
    return SwinTransformer(**{**SMALL, "num_classes": 5, **kwargs})


def closed_form(embed_dim, depths, heads, window, *, in_chans=3, patch=4, num_classes=1000, ratio=4) -> int:
    """Patch conv + LayerNorm; per block two LayerNorms, qkv and proj with bias, the (2M − 1)² × heads
    table, the MLP; per merging LayerNorm(4C) and Linear(4C, 2C) without bias; final LayerNorm; head."""
    total = in_chans * embed_dim * patch**2 + embed_dim + 2 * embed_dim
    for i, (d, h) in enumerate(zip(depths, heads, strict=True)):
        c = embed_dim * 2**i
        if i > 0:
            total += 2 * 2 * c + 2 * c * c  # LayerNorm(4 · C/2), Linear(4 · C/2, C)
        block = 2 * 2 * c + 3 * c * c + 3 * c + c * c + c + (2 * window - 1) ** 2 * h
        block += c * ratio * c + ratio * c + ratio * c * c + c
        total += d * block
    return total + 2 * c + c * num_classes + num_classes


# --- registry and counts ----------------------------------------------------------------------------


def test_registered_with_the_papers_layouts():
    assert set(NAMES) <= set(plugattn.list_models())
    for name, (e, depths, heads, window, img, dpr) in LAYOUT.items():
        entry = model_entry(name)
        assert entry.builder is SwinTransformer and entry.num_classes == 1000 and entry.family == "swin"
        assert entry.paper.startswith("Liu") and "2103.14030" in entry.paper
        config = entry.config
        assert (config["embed_dim"], tuple(config["depths"]), tuple(config["num_heads"])) == (
            e,
            depths,
            heads,
        )
        assert (config["window_size"], config["img_size"], config["drop_path_rate"]) == (window, img, dpr)


@pytest.mark.parametrize("name", NAMES)
def test_pinned_counts(name):
    assert count(plugattn.create_model(name, device="meta")) == COUNTS[name]
    assert closed_form(*LAYOUT[name][:4]) == COUNTS[name]


def test_counts_with_attention():
    """Each stage adds one module at its width: SCSA 16 C, SE 2 C · C/16 + C/16 + C."""
    widths = (96, 192, 384, 768)
    scsa = plugattn.create_model("swin_t", attention="scsa", device="meta")
    assert count(scsa) == COUNTS["swin_t"] + 16 * sum(widths) == 28_311_394
    se = sum(2 * c * (c // 16) + c // 16 + c for c in widths)
    assert count(plugattn.create_model("swin_t", attention="se", device="meta")) == COUNTS["swin_t"] + se
    two = plugattn.create_model("swin_t", attention="scsa", stages=(2, 3), device="meta")
    assert count(two) == COUNTS["swin_t"] + 16 * (384 + 768)
    assert [s.has_attention for s in two.layers] == [False, False, True, True]


def test_state_dict_keys_are_timms():
    state = plugattn.create_model("swin_t", device="meta").state_dict()
    assert len(state) == 173
    for key, shape in {
        "patch_embed.proj.weight": (96, 3, 4, 4),
        "patch_embed.norm.bias": (96,),
        "layers.0.blocks.1.attn.relative_position_bias_table": (169, 3),
        "layers.1.downsample.norm.weight": (384,),
        "layers.1.downsample.reduction.weight": (192, 384),
        "layers.2.blocks.5.attn.qkv.weight": (1152, 384),
        "layers.2.blocks.5.attn.proj.bias": (384,),
        "layers.3.blocks.0.norm2.weight": (768,),
        "layers.3.blocks.1.mlp.fc1.weight": (3072, 768),
        "layers.3.blocks.1.mlp.fc2.bias": (768,),
        "norm.weight": (768,),
        "head.fc.weight": (1000, 768),
    }.items():
        assert tuple(state[key].shape) == shape, key
    # the index into the table and the shift masks are derived, not stored (as in timm)
    assert not any(
        "relative_position_index" in k or "attn_mask" in k or "layers.0.downsample" in k for k in state
    )


# --- forward and training ---------------------------------------------------------------------------


def test_swin_t_at_224():
    torch.manual_seed(0)
    model = plugattn.create_model("swin_t", attention="scsa").eval()
    with torch.no_grad():
        y = model(torch.randn(1, 3, 224, 224))
    assert y.shape == (1, 1000) and torch.isfinite(y).all()


@pytest.mark.parametrize(
    "kwargs,shape",
    [
        ({}, (2, 3, 64, 64)),
        ({"img_size": (64, 128)}, (1, 3, 64, 128)),
        ({"in_chans": 1, "window_size": 2}, (3, 1, 64, 64)),
    ],
    ids=["square", "non-square", "grey-window2"],
)
def test_forward_shapes(kwargs, shape):
    torch.manual_seed(0)
    model = small(num_classes=7, attention="ham", **kwargs).eval()
    with torch.no_grad():
        y = model(torch.randn(shape))
    assert y.shape == (shape[0], 7) and torch.isfinite(y).all()


@pytest.mark.parametrize("position", ["stage_end", "after_merging"])
@pytest.mark.parametrize("attention", [None, "scsa", "ham", "se", "cbam"])
def test_a_training_step_reaches_every_parameter(attention, position):
    torch.manual_seed(0)
    model = small(attention=attention, position=position if attention else None)
    train_step(model, torch.randn(2, 3, 64, 64), 5)  # asserts a gradient on every parameter


@pytest.mark.parametrize("position", ["stage_end", "after_merging"])
@pytest.mark.parametrize("attention", ATTENTION)
def test_every_attention_on_every_stage(attention, position):
    torch.manual_seed(0)
    model = small(attention=attention, position=position).eval()
    assert [s.has_attention for s in model.layers] == [True] * 4
    assert {s.attn_position for s in model.layers} == {position}
    with torch.no_grad():
        y = model(torch.randn(2, 3, 64, 64))
    assert y.shape == (2, 5) and torch.isfinite(y).all()


@pytest.mark.parametrize("attention", ATTENTION)
def test_every_attention_builds_in_swin_t(attention):
    model = plugattn.create_model("swin_t", attention=attention, device="meta")
    assert all(s.has_attention and s.attn_position == "stage_end" for s in model.layers)


class Probe(nn.Module):
    """Records its input; returns it times ``scale``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels, self.scale, self.seen = channels, 1.0, None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = x.detach().clone()
        return x * self.scale


@pytest.mark.parametrize("position", ["stage_end", "after_merging"])
def test_the_hook_sees_the_stage_map_as_nchw(position):
    torch.manual_seed(0)
    model = small(attention=Probe, position=position).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        model(x)
        tokens = model.patch_embed(x)  # (B, h, w, C)
        for i, stage in enumerate(model.layers):
            merged = stage.downsample(tokens)
            tokens = stage.blocks(merged)
            seen = merged if position == "after_merging" else tokens
            assert stage.attn.channels == 32 * 2**i
            torch.testing.assert_close(stage.attn.seen, seen.permute(0, 3, 1, 2))  # (B, C, h, w)
    assert model.layers[0].attn.seen.shape == (2, 32, 16, 16)


def test_the_hook_output_goes_on():
    torch.manual_seed(0)
    model = small(attention=Probe, stages=(3,), features_only=True).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)[-1]
        model.layers[3].attn.scale = -2.0
        torch.testing.assert_close(model(x)[-1], -2.0 * before)


# --- features_only ----------------------------------------------------------------------------------


def test_features_only():
    torch.manual_seed(0)
    model = plugattn.create_model("swin_t", features_only=True, attention="scsa").eval()
    channels, reductions = [96, 192, 384, 768], [4, 8, 16, 32]
    assert model.feature_info.channels() == channels and model.feature_info.reduction() == reductions
    modules = dict(model.named_modules())
    assert model.feature_info.module_name() == [f"layers.{i}" for i in range(4)]
    assert all(name in modules for name in model.feature_info.module_name())
    assert not hasattr(model, "head") and not hasattr(model, "norm") and model.num_features == 768
    with torch.no_grad():
        features = model(torch.randn(1, 3, 224, 224))
    assert [tuple(f.shape) for f in features] == [
        (1, c, 224 // r, 224 // r) for c, r in zip(channels, reductions, strict=True)
    ]
    assert all(f.is_contiguous() for f in features)


def test_features_only_matches_the_classifier_models_features():
    torch.manual_seed(0)
    full = small(attention="se").eval()
    backbone = small(attention="se", features_only=True).eval()
    backbone.load_state_dict(
        {k: v for k, v in full.state_dict().items() if not k.startswith(("norm.", "head."))}
    )
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(backbone(x), full.forward_features(x))


def test_features_feed_a_neck():
    """An FPN-style neck sized from feature_info alone trains with the backbone."""
    backbone = small(features_only=True, attention="scsa")
    lateral = nn.ModuleList(nn.Conv2d(c, 16, 1) for c in backbone.feature_info.channels())
    feats = backbone(torch.randn(2, 3, 64, 64))
    top = lateral[-1](feats[-1])
    for f, lat in zip(reversed(feats[:-1]), reversed(lateral[:-1]), strict=True):
        top = lat(f) + nn.functional.interpolate(top, size=f.shape[-2:], mode="nearest")
    assert top.shape == (2, 16, 16, 16)
    top.mean().backward()
    assert all(p.grad is not None for p in backbone.parameters())


# --- windows, shifts and the mask -------------------------------------------------------------------


def displaced_window(h: int, w: int, window: tuple[int, int], shift: tuple[int, int]) -> tuple[int, int]:
    """The paper's SW-MSA partition without any roll: window boundaries at s, s + M, s + 2M, ... along each
    axis, so the border windows are smaller (token 0 … s − 1 form one); s = 0 gives the regular windows."""
    return (h - shift[0]) // window[0], (w - shift[1]) // window[1]


def reference_attention(block: SwinBlock, x: torch.Tensor) -> torch.Tensor:
    """Eq. (2) over the whole map, every token attending the tokens of its own displaced window only, the
    bias read from the table at (y_i − y_j + M − 1, x_i − x_j + M − 1)."""
    _, hh, ww, c = x.shape
    heads, (mh, mw) = block.attn.num_heads, block.window
    pos = [(i, j) for i in range(hh) for j in range(ww)]
    win = [displaced_window(*p, block.window, block.shift) for p in pos]
    allowed = torch.tensor([[a == b for b in win] for a in win])  # (HW query, HW key)
    rows = torch.tensor([[p[0] - q[0] for q in pos] for p in pos])  # y_i − y_j: in (−M, M) where allowed
    cols = torch.tensor([[p[1] - q[1] for q in pos] for p in pos])
    index = ((rows + mh - 1) * (2 * mw - 1) + cols + mw - 1).clamp(0, (2 * mh - 1) * (2 * mw - 1) - 1)
    bias = block.attn.relative_position_bias_table[index].permute(2, 0, 1)  # (heads, HW, HW)
    q, k, v = block.attn.qkv(x.reshape(hh * ww, c)).reshape(hh * ww, 3, heads, c // heads).permute(1, 2, 0, 3)
    logits = q @ k.transpose(-2, -1) / math.sqrt(c // heads) + bias
    out = logits.masked_fill(~allowed, float("-inf")).softmax(-1) @ v  # (heads, HW, d)
    return block.attn.proj(out.transpose(0, 1).reshape(1, hh, ww, c))


CASES = [((8, 8), 4, True), ((8, 8), 4, False), ((12, 8), 4, True), ((4, 8), 4, True), ((6, 6), 3, True)]
IDS = ["8x8-shifted", "8x8-regular", "12x8-shifted", "4x8-shift-along-width-only", "6x6-window3-shift1"]


@pytest.mark.parametrize("size,window,shifted", CASES, ids=IDS)
def test_window_attention_equals_the_displaced_partition(size, window, shifted):
    torch.manual_seed(0)
    block = SwinBlock(8, 2, size, window, shifted=shifted, dtype=torch.float64).eval()
    with torch.no_grad():
        block.attn.relative_position_bias_table.normal_()  # a bias that matters
        x = torch.randn(1, *size, 8, dtype=torch.float64)
        torch.testing.assert_close(
            block.window_attention(x), reference_attention(block, x), rtol=1e-10, atol=1e-10
        )


@pytest.mark.parametrize("size,window,shifted", CASES, ids=IDS)
def test_no_token_attends_across_a_displaced_window_boundary(size, window, shifted):
    """The Jacobian of the attention branch: output token p depends on input token q exactly when both
    lie in one displaced window (dependencies through masked pairs are e^-100-small)."""
    torch.manual_seed(0)
    block = SwinBlock(4, 1, size, window, shifted=shifted, dtype=torch.float64).eval()
    x = torch.randn(1, *size, 4, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(block.window_attention, x, vectorize=True)  # (1, H, W, C) × 2
    n = size[0] * size[1]
    depends = jac.reshape(n, 4, n, 4).abs().amax(dim=(1, 3)) > 1e-30  # (HW out, HW in)
    pos = [(i, j) for i in range(size[0]) for j in range(size[1])]
    win = [displaced_window(*p, block.window, block.shift) for p in pos]
    expected = torch.tensor([[a == b for b in win] for a in win])
    assert torch.equal(depends, expected)
    if shifted and any(block.shift):  # the roll brought tokens from opposite borders into one window
        assert not expected[0, n - 1]


def test_windows_are_clipped_and_shifts_alternate():
    model = plugattn.create_model("swin_t", device="meta")
    windows = [[(b.window, b.shift) for b in stage.blocks] for stage in model.layers]
    assert windows[0] == windows[1] == [((7, 7), (0, 0)), ((7, 7), (3, 3))]
    assert windows[2] == [((7, 7), (0, 0)), ((7, 7), (3, 3))] * 3
    assert windows[3] == [((7, 7), (0, 0))] * 2  # the 7×7 map is one window: nothing to shift
    model = small()
    assert [[b.shift for b in stage.blocks] for stage in model.layers] == [[(0, 0), (2, 2)]] * 2 + [
        [(0, 0)] * 2
    ] * 2
    assert [stage.blocks[0].window for stage in model.layers] == [(4, 4)] * 3 + [(2, 2)]


def test_mask_buffers():
    model = small()
    shifted = model.layers[0].blocks[1]
    assert model.layers[0].blocks[0].attn_mask is None
    assert shifted.attn_mask.shape == (16, 16, 16)  # 4×4 windows of 16 tokens on the 16×16 map
    assert set(shifted.attn_mask.unique().tolist()) == {-100.0, 0.0}
    for w, mask in enumerate(shifted.attn_mask):  # only the last row and column of windows mix borders
        assert mask.any() == (w // 4 == 3 or w % 4 == 3)
    assert not set(dict(model.named_buffers())) & set(model.state_dict())  # derived, not stored


# --- stochastic depth, initialisation, dtypes, round trips ------------------------------------------


def test_stochastic_depth_rises_linearly():
    model = plugattn.create_model("swin_t", device="meta")
    rates = [b.drop_path1.p for stage in model.layers for b in stage.blocks]
    assert rates == pytest.approx([0.2 * k / 11 for k in range(12)])
    assert all(b.drop_path1.p == b.drop_path2.p for stage in model.layers for b in stage.blocks)
    drop = DropPath(0.5).train()
    y = drop(torch.ones(1000, 3, 2))
    assert set(y.unique().tolist()) == {0.0, 2.0} and all(len(row.unique()) == 1 for row in y)
    assert 0.4 < (y[:, 0, 0] == 0).float().mean() < 0.6
    assert torch.equal(drop.eval()(torch.ones(4, 3)), torch.ones(4, 3))


class LinearAttention(nn.Module):
    """A user's module with a linear layer and its own init, which the backbone must leave alone."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Linear(channels, channels)
        nn.init.constant_(self.fc.weight, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc(x.mean(dim=(2, 3))))[:, :, None, None]


def test_initialisation():
    torch.manual_seed(0)
    model = plugattn.create_model("swin_t", attention=LinearAttention)
    qkv = model.layers[2].blocks[0].attn.qkv
    assert qkv.weight.std().item() == pytest.approx(0.02, rel=0.02) and not qkv.bias.any()
    assert model.head.fc.weight.std().item() == pytest.approx(0.02, rel=0.02) and not model.head.fc.bias.any()
    table = model.layers[2].blocks[0].attn.relative_position_bias_table
    assert table.std().item() == pytest.approx(0.02, rel=0.1)
    assert torch.all(model.norm.weight == 1) and not model.norm.bias.any()
    assert all(torch.all(s.attn.fc.weight == 0.5) for s in model.layers)  # the attention's own init
    assert model.no_weight_decay() == {
        f"layers.{i}.blocks.{j}.attn.relative_position_bias_table"
        for i, d in enumerate((2, 2, 6, 2))
        for j in range(d)
    }


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_dtypes(dtype):
    torch.manual_seed(0)
    model = small(attention="scsa", dtype=dtype).eval()
    assert {p.dtype for p in model.parameters()} == {dtype} and model.layers[0].blocks[
        1
    ].attn_mask.dtype == dtype
    with torch.no_grad():
        y = model(torch.randn(2, 3, 64, 64, dtype=dtype))
    assert y.dtype == dtype and torch.isfinite(y).all()


def test_round_trips_and_channels_last_input():
    torch.manual_seed(0)
    model = small(attention="ham").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        y = model(x)
        torch.testing.assert_close(model(x.to(memory_format=torch.channels_last)), y)
        torch.testing.assert_close(pickle.loads(pickle.dumps(model))(x), y)
        fresh = small(attention="ham").eval()
        fresh.load_state_dict(copy.deepcopy(model.state_dict()))  # strict
        torch.testing.assert_close(fresh(x), y, rtol=0, atol=0)


# --- bad input --------------------------------------------------------------------------------------

WINDOW_7_AT_64 = (
    r"window_size=7 does not tile the stages' token maps \['16×16', '8×8', '4×4', '2×2'\] "
    r"\(img_size=\(64, 64\), patch_size=4\).*window sizes that fit: \[1, 2, 4, 8, 16\]"
)
BAD = [
    ({"img_size": 30}, r"img_size must be divisible by patch_size=4, got img_size=30"),
    ({"img_size": 48}, r"img_size must be divisible by patch_size · 2\^\(stages − 1\) = 32 .*=\(48, 48\)"),
    (
        {"img_size": (64, 64, 3)},
        r"img_size must be an integer or a pair \(height, width\), got \(64, 64, 3\)",
    ),
    ({"img_size": 0}, r"img_size must be >= 1, got 0"),
    ({"img_size": 64}, WINDOW_7_AT_64),
    ({"window_size": 0}, r"window_size must be >= 1, got 0"),
    ({"patch_size": 0}, r"patch_size must be >= 1, got 0"),
    ({"embed_dim": 100}, r"embed_dim=100 gives stage 0 100 channels, which num_heads\[0\]=3 does not"),
    ({"num_heads": (3, 6, 12)}, r"depths and num_heads must be non-empty sequences of equal length"),
    ({"depths": (2, 0, 6, 2)}, r"depths\[1\] must be >= 1, got 0"),
    ({"depths": "2262"}, r"depths and num_heads must be non-empty sequences"),
    ({"mlp_ratio": 0}, r"mlp_ratio must lie in \(0, inf\), got 0"),
    ({"drop_path_rate": 1.0}, r"drop_path_rate must lie in \[0, 1\), got 1.0"),
    ({"drop_rate": -0.1}, r"drop_rate must lie in \[0, 1\), got -0.1"),
    ({"num_classes": 0}, r"num_classes must be >= 1, got 0"),
    ({"in_chans": 1.5}, r"in_chans must be an integer, got 1.5"),
    ({"features_only": 1}, r"features_only must be True or False, got 1 \(int\)"),
    ({"position": "middle"}, r"position must be one of 'stage_end', 'after_merging'; got 'middle'"),
    (
        {"position": "end"},
        r"position 'end' names a place in a convolutional block; a Swin stage has none: "
        r"position must be one of 'stage_end' .* or 'after_merging'",
    ),
    ({"attention": "se", "position": "before_last_conv"}, r"position 'before_last_conv' names a place"),
    ({"stages": (4,)}, r"stages entries must lie in \[0, 3\] \(this model has 4 stages\), got 4"),
    ({"attn_kwargs": [("rd_ratio", 0.5)]}, r"attn_kwargs must be a dict .*, got \[\('rd_ratio', 0.5\)\]"),
    ({"attention": "hma"}, r"attention must be one of .*; got 'hma'"),
    (
        {"attention": "se", "attn_kwargs": {"rd_channels": 0}},
        r"layers\.0: attention on this stage's 96-channel map: .*the stage widths here are \[96, 192, 384",
    ),
    (
        {"zero_init_residual": True},
        r"swin_t takes no option 'zero_init_residual'; its options: .*window_size",
    ),
]


@pytest.mark.parametrize("kwargs,match", BAD)
def test_bad_model_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plugattn.create_model("swin_t", device="meta", **kwargs)


def test_an_input_of_another_size_is_refused():
    model = small()
    match = r"the input is 32×48, but this Swin Transformer was built for img_size=\(64, 64\) .*=\(32, 48\)"
    with pytest.raises(ValueError, match=match):
        model(torch.randn(1, 3, 32, 48))


def test_insert_attention_does_not_know_swin_stages():
    """Attention goes into a Swin model when it is built; the retrofit looks for convolutional blocks."""
    with pytest.raises(ValueError, match=r"insert_attention found no residual block in SwinTransformer"):
        plugattn.insert_attention(small(), "se")
