"""RepVGG: counts (training and deployed form), forward, training, re-parameterisation, features, errors.

The numbers here are written out, not read from plugattn: the layouts are the paper's architectural
specification, the counts follow from them by the closed form below, and the paper's ImageNet table
gives the deployed counts in millions.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

import plugattn
from plugattn.models import RepVGG, RepVGGBlock, ResidualBlock, model_entry, reparameterize
from plugattn.models.repvgg import repvgg_widths
from tests.models.helpers import count, train_step

NAMES = ["repvgg_a0", "repvgg_a1", "repvgg_a2", "repvgg_b0"]
A, B = (1, 2, 4, 14, 1), (1, 4, 6, 16, 1)
# depths and widths min(64, 64a), 64a, 128a, 256a, 512b: A0 (a, b) = (0.75, 2.5), A1 (1, 2.5),
# A2 (1.5, 2.75), B0 (1, 2.5).
LAYOUT = {
    "repvgg_a0": (A, (48, 48, 96, 192, 1280)),
    "repvgg_a1": (A, (64, 64, 128, 256, 1280)),
    "repvgg_a2": (A, (64, 96, 192, 384, 1408)),
    "repvgg_b0": (B, (64, 64, 128, 256, 1280)),
}
# 1000 classes. Training form: 3×3 conv + BN, 1×1 conv + BN, identity BN where C_in = C_out, stride 1.
TRAIN_COUNTS = {
    "repvgg_a0": 9_108_968,
    "repvgg_a1": 14_092_264,
    "repvgg_a2": 28_210_600,
    "repvgg_b0": 15_817_960,
}
# Deployed form: one 3×3 conv with bias per block.
DEPLOY_COUNTS = {
    "repvgg_a0": 8_309_384,
    "repvgg_a1": 12_789_864,
    "repvgg_a2": 25_499_944,
    "repvgg_b0": 14_339_048,
}
# The paper's ImageNet table, millions: the deployed counts, truncated (not rounded) to two decimals.
PAPER_M = {"repvgg_a0": 8.30, "repvgg_a1": 12.78, "repvgg_a2": 25.49, "repvgg_b0": 14.33}
ATTENTION_FOR_FUSION = [None, "se", "ham", "scsa", "cbam"]


def closed_form(depths, widths, *, deployed: bool, in_chans: int = 3, num_classes: int = 1000) -> int:
    total, c_in = 0, in_chans
    for depth, c in zip(depths, widths, strict=True):
        for j in range(depth):
            if deployed:
                total += 9 * c_in * c + c
            else:
                identity = j > 0 and c_in == c  # stride 1 after a stage's first block
                total += 9 * c_in * c + 2 * c + c_in * c + 2 * c + (2 * c if identity else 0)
            c_in = c
    return total + c_in * num_classes + num_classes


def settle_bn(model: nn.Module, x: torch.Tensor, seed: int = 0) -> nn.Module:
    """Random BN affines, then running statistics taken from ``x`` (means and variances far from 0 and 1,
    yet eval-mode activations stay O(1) through 22 blocks, which randomly drawn statistics do not), the
    variances raised by 0.5; eval mode."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for m in bns:
            shape, dtype = m.weight.shape, m.weight.dtype
            m.weight.copy_(1 + 0.2 * torch.randn(shape, generator=g, dtype=dtype))
            m.bias.copy_(0.2 * torch.randn(shape, generator=g, dtype=dtype))
            m.reset_running_stats()
            m.momentum = None  # one batch: running statistics = that batch's
        model.train()
        model(x)
    with torch.no_grad():
        for m in bns:
            m.momentum = 0.1
            # No near-constant channel of a late, 2×2 map divides by a tiny σ and amplifies round-off.
            m.running_var.add_(0.5)
    return model.eval()


def blocks_of(model: nn.Module) -> list[RepVGGBlock]:
    return [m for m in model.modules() if isinstance(m, RepVGGBlock)]


# --- counts -----------------------------------------------------------------------------------------


def test_the_registered_layouts_are_the_papers():
    for name, (depths, widths) in LAYOUT.items():
        entry = model_entry(name)
        assert tuple(entry.config["depths"]) == depths and tuple(entry.config["widths"]) == widths
    assert repvgg_widths(0.75, 2.5) == LAYOUT["repvgg_a0"][1]


@pytest.mark.parametrize("name", NAMES)
def test_pinned_counts(name):
    assert count(plugattn.create_model(name, device="meta")) == TRAIN_COUNTS[name]
    assert count(plugattn.create_model(name, device="meta", deploy=True)) == DEPLOY_COUNTS[name]
    fused = plugattn.create_model(name, device="meta").reparameterize()
    assert count(fused) == DEPLOY_COUNTS[name]


@pytest.mark.parametrize("name", NAMES)
def test_counts_by_closed_form(name):
    depths, widths = LAYOUT[name]
    assert closed_form(depths, widths, deployed=False) == TRAIN_COUNTS[name]
    assert closed_form(depths, widths, deployed=True) == DEPLOY_COUNTS[name]


@pytest.mark.parametrize("name", NAMES)
def test_paper_table_reports_the_deployed_counts(name):
    assert math.floor(DEPLOY_COUNTS[name] / 10_000) / 100 == PAPER_M[name]
    assert math.floor(TRAIN_COUNTS[name] / 10_000) / 100 != PAPER_M[name]


def test_counts_with_attention():
    """SE (two 1×1 convs with bias through C // 16 channels) at each block's width, in either form."""
    depths, widths = LAYOUT["repvgg_a0"]
    se = sum(d * (2 * c * (c // 16) + c // 16 + c) for d, c in zip(depths, widths, strict=True))
    model = plugattn.create_model("repvgg_a0", attention="se", device="meta")
    assert count(model) == TRAIN_COUNTS["repvgg_a0"] + se == 9_388_529
    assert count(model.reparameterize()) == DEPLOY_COUNTS["repvgg_a0"] + se == 8_588_945


# --- registry, forward, training --------------------------------------------------------------------


def test_registered_with_the_other_models():
    assert set(NAMES) <= set(plugattn.list_models())
    for name in NAMES:
        entry = model_entry(name)
        assert entry.builder is RepVGG and entry.num_classes == 1000 and entry.family == "repvgg"
        assert entry.paper.startswith("Ding") and "2101.03697" in entry.paper
    model = plugattn.create_model("repvgg_a0", attention="scsa", device="meta")
    assert model.classifier.out_features == 1000
    # SCSA's paper place ("before_last_conv") is on a branch here: it goes after the sum, as every module.
    assert {b.attn_position for b in blocks_of(model)} == {"end"}
    assert all(b.has_attention for b in blocks_of(model))


@pytest.mark.parametrize("name", ["repvgg_a0", "repvgg_a1", "repvgg_a2"])  # B0 has A1's widths
@pytest.mark.parametrize("attention", plugattn.list_attention())
def test_every_attention_builds_at_its_defaults(name, attention):
    model = plugattn.create_model(name, attention=attention, device="meta")
    blocks = [b for b in model.modules() if isinstance(b, ResidualBlock)]
    assert len(blocks) == sum(LAYOUT[name][0]) and all(b.has_attention for b in blocks)


@pytest.mark.parametrize("name", NAMES)
def test_forward_shapes(name):
    torch.manual_seed(0)
    model = plugattn.create_model(name, num_classes=7, in_chans=1).eval()
    with torch.no_grad():
        y = model(torch.randn(2, 1, 64, 48))
    assert y.shape == (2, 7) and torch.isfinite(y).all()


@pytest.mark.parametrize("attention", [None, "se", "ham", "scsa", "cbam"])
def test_a_training_step_reaches_every_parameter(attention):
    torch.manual_seed(0)
    model = plugattn.create_model("repvgg_a0", attention=attention, num_classes=5)
    train_step(model, torch.randn(2, 3, 64, 64), 5)  # asserts a gradient on every parameter


def test_a_training_step_in_the_deployed_form():
    torch.manual_seed(0)
    model = plugattn.create_model("repvgg_a0", attention="se", num_classes=5, deploy=True)
    assert model.deployed and not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    train_step(model, torch.randn(2, 3, 64, 64), 5)


def test_initialisation():
    torch.manual_seed(0)
    model = plugattn.create_model("repvgg_a0", attention="se")
    w = model.stages[3][1].conv_kxk.conv.weight  # (192, 192, 3, 3): fan_out = 192 * 9
    assert w.std().item() == pytest.approx(math.sqrt(2 / (192 * 9)), rel=0.05)
    assert model.classifier.weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert torch.all(model.stages[1][1].identity.weight == 1)
    # the attention keeps its own (PyTorch's default) init: fc1 of stage 0 is (3, 48, 1, 1), bound 1/√48
    assert model.stages[0][0].attn.fc1.weight.abs().max() <= 1 / math.sqrt(48)


# --- the block and where its attention goes ---------------------------------------------------------


class Probe(nn.Module):
    """Records its input; returns it times ``scale``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels, self.scale, self.seen = channels, 1.0, None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = x.detach().clone()
        return x * self.scale


def test_block_computes_the_three_branches():
    torch.manual_seed(0)
    block = settle_bn(RepVGGBlock(8, 8, attention=Probe), torch.randn(4, 8, 8, 8))
    x = torch.randn(2, 8, 8, 8)
    with torch.no_grad():
        branches = block.conv_kxk(x) + block.conv_1x1(x) + block.identity(x)
        torch.testing.assert_close(block(x), torch.relu(branches))
    assert block.attn_position == "end" and block.attn.channels == 8
    torch.testing.assert_close(block.attn.seen, branches)  # after the sum, before the ReLU
    assert (block.attn.seen < 0).any()
    strided = RepVGGBlock(8, 16, 2)
    assert strided.identity is None and strided.conv_1x1.conv.stride == (2, 2)
    assert strided(torch.randn(1, 8, 9, 9)).shape == (1, 16, 5, 5)  # 3×3 pad 1 and 1×1 pad 0 agree


def test_after_act_sees_the_relu_output():
    block = RepVGGBlock(8, 8, attention=Probe, position="after_act").eval()
    block.attn.scale = -1.0
    y = block(torch.randn(2, 8, 8, 8))
    assert (block.attn.seen >= 0).all() and (y <= 0).all()  # the attention has the last word


def test_end_attention_is_before_the_relu():
    block = RepVGGBlock(8, 8, attention=Probe).eval()
    block.attn.scale = -1.0
    assert (block(torch.randn(2, 8, 8, 8)) >= 0).all()


@pytest.mark.parametrize("position", ["before_last_conv", "after_conv1", "after_conv2", "after_conv3"])
def test_a_position_on_one_branch_is_refused(position):
    match = rf"position '{position}' would put the attention on one branch .* 'end' .* 'after_act'"
    with pytest.raises(ValueError, match=match):
        plugattn.create_model("repvgg_a0", attention="se", position=position, device="meta")
    with pytest.raises(ValueError, match=match):
        plugattn.create_model("repvgg_a0", position=position, device="meta")  # checked without attention
    with pytest.raises(ValueError, match=match):
        RepVGGBlock(8, 8, attention="se", position=position)
    with pytest.raises(ValueError, match=match):
        plugattn.insert_attention(plugattn.create_model("repvgg_a0", device="meta"), "se", position=position)


def test_stages_and_attn_kwargs():
    model = plugattn.create_model("repvgg_a0", attention="se", stages=(3, 4), attn_kwargs={"rd_ratio": 0.25},
                                  position="after_act", device="meta")  # fmt: skip
    flags = [[b.has_attention for b in stage] for stage in model.stages]
    assert flags == [[False], [False] * 2, [False] * 4, [True] * 14, [True]]
    assert {b.attn_position for b in blocks_of(model) if b.has_attention} == {"after_act"}


def test_insert_attention_fills_the_hook():
    model = plugattn.create_model("repvgg_a0", device="meta")
    plugattn.insert_attention(model, "cbam", stages=(4,))
    assert [b.has_attention for b in blocks_of(model)] == [False] * 21 + [True]
    assert model.stages[4][0].attn_position == "end"


# --- structural re-parameterisation -----------------------------------------------------------------


def outputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The logits and every stage's output (the same tensors ``features_only`` would give)."""
    with torch.no_grad():
        return [model(x), *model.forward_features(x)]


@pytest.mark.parametrize(
    "dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)], ids=["float32", "float64"]
)
@pytest.mark.parametrize("attention", ATTENTION_FOR_FUSION)
def test_fused_repvgg_a0_gives_the_same_outputs(attention, dtype, tol):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64, dtype=dtype)
    model = settle_bn(plugattn.create_model("repvgg_a0", attention=attention, dtype=dtype), x)
    kept = [b.attn for b in blocks_of(model)]
    before = outputs(model, x)
    assert model.reparameterize() is model and model.deployed
    assert all(b.attn is a for b, a in zip(blocks_of(model), kept, strict=True))  # the same modules
    for b in blocks_of(model):
        assert b.conv_kxk is b.conv_1x1 is b.identity is None
        assert b.reparam_conv.kernel_size == (3, 3) and b.reparam_conv.weight.dtype == dtype
    assert not any(isinstance(m, nn.BatchNorm2d) for name, m in model.named_modules() if ".attn" not in name)
    torch.testing.assert_close(outputs(model, x), before, rtol=tol, atol=tol)


@pytest.mark.parametrize("attention", ["se", "cbam"])
def test_fusion_keeps_attention_after_the_relu(attention):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    model = RepVGG(depths=(1, 2, 3, 2, 1), widths=(16, 16, 32, 32, 64), num_classes=10,
                   attention=attention, position="after_act")  # fmt: skip
    settle_bn(model, x)
    before = outputs(model, x)
    reparameterize(model)
    torch.testing.assert_close(outputs(model, x), before, rtol=1e-5, atol=1e-5)


def test_fused_kernel_of_a_fresh_block_is_conv_plus_identity():
    """With BN at its init (γ=1, β=0, μ=0, σ²=1), eq. (3) is W_3 + pad(W_1) + I, scaled by 1/√(1+ε)."""
    torch.manual_seed(0)
    block = RepVGGBlock(4, 4).eval()
    kernel, bias = block.fused_kernel_bias()
    expected = block.conv_kxk.conv.weight.detach().clone()
    expected[:, :, 1, 1] += block.conv_1x1.conv.weight[:, :, 0, 0].detach() + torch.eye(4)
    torch.testing.assert_close(kernel, expected / math.sqrt(1 + 1e-5))
    torch.testing.assert_close(bias, torch.zeros(4))


def test_reparameterizing_twice_is_harmless():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    model = settle_bn(plugattn.create_model("repvgg_a0", attention="se"), x).reparameterize()
    convs, state, before = (
        [b.reparam_conv for b in blocks_of(model)],
        copy.deepcopy(model.state_dict()),
        outputs(model, x),
    )
    reparameterize(model.reparameterize())
    assert all(b.reparam_conv is c for b, c in zip(blocks_of(model), convs, strict=True))
    torch.testing.assert_close(model.state_dict(), state, rtol=0, atol=0)
    torch.testing.assert_close(outputs(model, x), before, rtol=0, atol=0)
    deployed = plugattn.create_model("repvgg_a0", deploy=True, device="meta")
    assert count(deployed.reparameterize()) == DEPLOY_COUNTS["repvgg_a0"]  # deploy=True is fused already


def test_reparameterizing_in_training_mode_uses_the_running_statistics():
    """Allowed (as timm): the mode is kept, eq. (2) uses the running statistics, and the fused conv
    then trains as a plain conv."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    model = settle_bn(plugattn.create_model("repvgg_a0", attention="ham", num_classes=5), x)
    before = outputs(model, x)
    model.train()
    model.reparameterize()
    assert model.training and model.deployed
    torch.testing.assert_close(outputs(model.eval(), x), before, rtol=1e-5, atol=1e-5)
    train_step(model, x, 5)  # every parameter (reparam_conv, attention, classifier) gets a gradient


@pytest.mark.parametrize("attention", [None, "scsa"])
def test_fused_state_dict_loads_into_the_deploy_form(attention):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    fused = settle_bn(plugattn.create_model("repvgg_a0", attention=attention), x).reparameterize()
    state = fused.state_dict()
    assert "stages.1.1.reparam_conv.bias" in state and not any(
        "conv_kxk" in k or "identity" in k for k in state
    )
    deployed = plugattn.create_model("repvgg_a0", attention=attention, deploy=True)
    assert sorted(deployed.state_dict()) == sorted(state)
    deployed.load_state_dict(state)  # strict
    torch.testing.assert_close(outputs(deployed.eval(), x), outputs(fused, x), rtol=0, atol=0)


def test_reparameterize_needs_repvgg_blocks():
    with pytest.raises(ValueError, match=r"reparameterize found no RepVGGBlock in Conv2d"):
        reparameterize(nn.Conv2d(3, 3, 3))


def test_reparameterize_reaches_blocks_in_any_model():
    """The function fuses RepVGG blocks wherever they sit (here inside a user's Sequential)."""
    torch.manual_seed(0)
    net = nn.Sequential(RepVGGBlock(3, 8, 2, attention="eca"), RepVGGBlock(8, 8), nn.Flatten())
    x = torch.randn(2, 3, 16, 16)
    settle_bn(net, x)
    before = outputs_of(net, x)
    reparameterize(net)
    assert all(b.deployed for b in net[:2])
    torch.testing.assert_close(outputs_of(net, x), before, rtol=1e-5, atol=1e-5)


def outputs_of(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return module(x)


# --- features_only ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,channels",
    [("repvgg_a0", [48, 48, 96, 192, 1280]), ("repvgg_a2", [64, 96, 192, 384, 1408])],
)
def test_features_only(name, channels):
    torch.manual_seed(0)
    model = plugattn.create_model(name, features_only=True, attention="scsa").eval()
    reductions = [2, 4, 8, 16, 32]
    assert model.feature_info.channels() == channels and model.feature_info.reduction() == reductions
    assert model.feature_info.module_name() == [f"stages.{i}" for i in range(5)]
    assert not hasattr(model, "classifier") and model.num_features == channels[-1]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        features = model(x)
        assert [tuple(f.shape) for f in features] == [
            (1, c, 64 // r, 64 // r) for c, r in zip(channels, reductions, strict=True)
        ]
        model.reparameterize()
        torch.testing.assert_close(model(x), features, rtol=1e-4, atol=1e-4)


def test_features_only_matches_the_classifier_models_features():
    torch.manual_seed(0)
    full = plugattn.create_model("repvgg_a0", attention="se").eval()
    backbone = plugattn.create_model("repvgg_a0", attention="se", features_only=True).eval()
    backbone.load_state_dict({k: v for k, v in full.state_dict().items() if not k.startswith("classifier")})
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(outputs_of(backbone, x), outputs(full, x)[1:])


# --- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"depths": (1, 2)}, r"depths and widths must be non-empty sequences of equal length"),
        ({"depths": "12141"}, r"depths and widths must be non-empty sequences"),
        ({"widths": 64}, r"depths and widths must be non-empty sequences"),
        ({"depths": (1, 0, 4, 14, 1)}, r"depths\[1\] must be >= 1, got 0"),
        ({"widths": (48, 48.5, 96, 192, 1280)}, r"widths\[1\] must be an integer, got 48.5"),
        ({"num_classes": 0}, r"num_classes must be >= 1, got 0"),
        ({"in_chans": 1.5}, r"in_chans must be an integer, got 1.5"),
        ({"deploy": "yes"}, r"deploy must be True or False, got 'yes'"),
        ({"features_only": 1}, r"features_only must be True or False, got 1"),
        ({"attn_kwargs": [("rd_ratio", 0.5)]}, r"attn_kwargs must be a dict .*, got \[\('rd_ratio', 0.5\)\]"),
        ({"stages": (5,)}, r"stages entries must lie in \[0, 4\] \(this model has 5 stages\), got 5"),
        ({"stages": "0"}, r"stages must be a sequence"),
        ({"position": "middle"}, r"position must be one of 'end', 'after_act'; got 'middle'"),
        ({"attention": "hma"}, r"attention must be one of .*; got 'hma'"),
        ({"attention": "se", "attn_kwargs": {"bogus": 1}}, r"takes no argument 'bogus'"),
        (
            {"zero_init_residual": True},
            r"repvgg_a0 takes no option 'zero_init_residual'; its options: .*deploy",
        ),
    ],
)
def test_bad_model_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plugattn.create_model("repvgg_a0", device="meta", **kwargs)


@pytest.mark.parametrize(
    "args,kwargs,match",
    [
        ((0, 8), {}, r"in_chs must be >= 1, got 0"),
        ((8, "8"), {}, r"out_chs must be an integer, got '8'"),
        ((8, 8, 3), {}, r"stride must be one of 1, 2; got 3"),
        ((8, 8), {"deploy": None}, r"deploy must be True or False, got None"),
        (
            (8, 8),
            {"position": "before_relu"},
            r"position must be one of 'end', 'after_act'; got 'before_relu'",
        ),
    ],
)
def test_bad_block_arguments(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        RepVGGBlock(*args, **kwargs)


@pytest.mark.parametrize(
    "a,b,match", [(0, 2.5, r"a must lie in \(0, inf\), got 0"), (1, "2", r"b must be a finite")]
)
def test_bad_width_multipliers(a, b, match):
    with pytest.raises(ValueError, match=match):
        repvgg_widths(a, b)


def test_attention_that_does_not_fit_a_width_names_the_block():
    with pytest.raises(ValueError, match=r"stages\.0\.0: .*48-channel map.*the stage widths here are \[48"):
        plugattn.create_model("repvgg_a0", attention="se", attn_kwargs={"rd_channels": 0}, device="meta")
