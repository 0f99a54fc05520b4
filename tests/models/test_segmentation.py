"""Semantic FPN: shapes over the backbones, training with attention, the pinned head count, the structure
checked against a functional re-derivation from the paper, bad input, determinism and state dicts.

The structure check builds the FPN and the semantic branch again here from the paper's description
(Lin et al. Sec. 3, Kirillov et al. Sec. 3), level by level with ``F.conv2d``/``F.group_norm``, reading
only the module's weights, over a stub backbone whose maps are fixed tensors.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import plugattn
from plugattn.models.features import FeatureInfo
from plugattn.models.registry import create_model
from plugattn.models.segmentation import SemanticFPN, segmentation_model
from tests.models.helpers import count, randomize_bn

SWIN_SMALL = {"img_size": 64, "window_size": 4}  # maps 16/8/4/2, windows 4/4/4/2
BACKBONES = {  # name: (backbone options, input H × W)
    "resnet18": ({}, (64, 64)),
    "resnet50": ({}, (32, 32)),
    "mobilenet_v2": ({}, (64, 48)),
    "repvgg_a0": ({}, (64, 64)),
    "swin_t": (SWIN_SMALL, (64, 64)),
}


class Stub(nn.Module):
    """A features_only stand-in: fixed maps at the given reductions, for a ``size`` input (sides rounded
    up at every stride, as a stride-2 conv does); ``zero`` blanks one level."""

    def __init__(self, chans=(8, 16, 24, 32), reductions=(4, 8, 16, 32), size=(50, 38), seed=0):
        super().__init__()
        self.feature_info = FeatureInfo(
            {"num_chs": c, "reduction": r, "module": f"level{i}"}
            for i, (c, r) in enumerate(zip(chans, reductions, strict=True))
        )
        g = torch.Generator().manual_seed(seed)
        self.maps = [
            torch.randn(1, c, math.ceil(size[0] / r), math.ceil(size[1] / r), generator=g)
            for c, r in zip(chans, reductions, strict=True)
        ]
        self.zero: int | None = None

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = [torch.zeros_like(m) if i == self.zero else m for i, m in enumerate(self.maps)]
        return [m.expand(x.shape[0], -1, -1, -1) for m in maps]


def head_count(in_chs, reductions, channels, head_channels, num_classes) -> int:
    """Laterals (1×1 + bias), FPN outputs (3×3 + bias), per level max(1, log2(r_i / r_0)) 3×3 convs
    without bias (the first from ``channels``) each with a GroupNorm (weight + bias), the 1×1 classifier."""
    total = sum(c * channels + channels for c in in_chs)
    total += len(in_chs) * (9 * channels * channels + channels)
    for r in reductions:
        n = max(1, round(math.log2(r / reductions[0])))
        total += 9 * channels * head_channels + (n - 1) * 9 * head_channels * head_channels
        total += n * 2 * head_channels
    return total + head_channels * num_classes + num_classes


# --- shapes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("in_chans", [1, 3])
@pytest.mark.parametrize("name", list(BACKBONES))
def test_logits_at_input_size(name, in_chans):
    assert name in plugattn.list_models()
    options, (h, w) = BACKBONES[name]
    torch.manual_seed(0)
    model = segmentation_model(name, num_classes=5, in_chans=in_chans, **options).eval()
    with torch.no_grad():
        y = model(torch.randn(1, in_chans, h, w))
    assert y.shape == (1, 5, h, w)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("size", [(97, 75), (33, 64), (1, 1)])
def test_odd_and_tiny_inputs(size):
    torch.manual_seed(0)
    model = segmentation_model("resnet18", num_classes=3, in_chans=1).eval()
    with torch.no_grad():
        y = model(torch.randn(1, 1, *size))
    assert y.shape == (1, 3, *size)
    assert torch.isfinite(y).all()


# --- training with attention ------------------------------------------------------------------------


@pytest.mark.parametrize("attention", ["none", "se", "ham", "scsa"])
def test_training_step_reaches_head_and_attention(attention):
    torch.manual_seed(0)
    model = segmentation_model("resnet18", num_classes=4, attention=attention).train()
    x, y = torch.randn(2, 3, 64, 48), torch.randint(0, 4, (2, 64, 48))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    assert torch.isfinite(loss)
    named = dict(model.named_parameters())
    head = [n for n in named if not n.startswith("backbone.")]
    attn = [n for n in named if ".attn." in n]
    assert head and (attn if attention != "none" else not attn)
    for n in head + attn:
        grad = named[n].grad
        assert grad is not None, f"no gradient reached {n}"
        assert torch.isfinite(grad).all(), n
    assert any(named[n].grad.abs().sum() > 0 for n in attn) or attention == "none"
    before = named["classifier.weight"].detach().clone()
    opt.step()
    assert not torch.equal(before, named["classifier.weight"])


# --- counts -----------------------------------------------------------------------------------------


def test_resnet18_head_count_by_closed_form():
    model = segmentation_model("resnet18", num_classes=11, channels=64, head_channels=64)
    expected = head_count([64, 128, 256, 512], [4, 8, 16, 32], 64, 64, 11)
    # 61,696 laterals + 147,712 FPN outputs + 7 branch convs 258,048 + GN 896 + classifier 715
    assert expected == 469_067
    assert count(model) - count(model.backbone) == expected
    assert count(model.backbone) == 11_176_512  # ResNet-18 without its fc
    assert model.upsampling_steps == (0, 1, 2, 3)
    assert [len(blocks) for blocks in model.head] == [1, 1, 2, 3]


@pytest.mark.parametrize("name", ["mobilenet_v2", "repvgg_a0"])
def test_head_count_follows_the_backbone_levels(name):
    model = segmentation_model(name, num_classes=7, channels=16, head_channels=24)
    info = model.backbone.feature_info
    expected = head_count(info.channels(), info.reduction(), 16, 24, 7)
    assert count(model) - count(model.backbone) == expected


# --- structure, independently -----------------------------------------------------------------------


def reference(model: SemanticFPN, maps: list[torch.Tensor], size, groups: int) -> torch.Tensor:
    """The paper's FPN and semantic branch written out level by level (consecutive 2× strides)."""
    n = len(maps)
    merged = [None] * n
    for i in reversed(range(n)):
        m = F.conv2d(maps[i], model.lateral[i].weight, model.lateral[i].bias)
        if i < n - 1:
            m = m + F.interpolate(merged[i + 1], size=m.shape[-2:], mode="nearest")
        merged[i] = m
    p = [F.conv2d(m, model.output[i].weight, model.output[i].bias, padding=1) for i, m in enumerate(merged)]
    total = 0
    for i in range(n):
        s = p[i]
        for j in range(max(1, i)):
            block = model.head[i][j]
            s = F.relu(F.group_norm(F.conv2d(s, block.conv.weight, padding=1), groups, block.norm.weight,
                                    block.norm.bias))  # fmt: skip
            if i > 0:  # level i is i halvings coarser than level 0: go down one level
                s = F.interpolate(s, size=p[i - j - 1].shape[-2:], mode="bilinear", align_corners=False)
        total = total + s
    logits = F.conv2d(total, model.classifier.weight, model.classifier.bias)
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def perturb(model: nn.Module, seed: int = 1) -> nn.Module:
    """Non-zero biases and non-unit norms, so the comparison sees every parameter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def test_matches_the_paper_written_out():
    torch.manual_seed(0)
    stub = Stub(size=(50, 38))
    model = perturb(SemanticFPN(stub, 6, channels=16, head_channels=12, groups=4)).eval()
    x = torch.randn(2, 3, 50, 38)
    with torch.no_grad():
        y = model(x)
        expected = reference(model, stub(x), (50, 38), groups=4)
    assert y.shape == (2, 6, 50, 38)
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)


def test_every_level_contributes():
    stub = Stub()
    model = SemanticFPN(stub, 3, channels=16, head_channels=16).eval()
    x = torch.randn(1, 3, 50, 38)
    with torch.no_grad():
        full = model(x)
        for i in range(4):
            stub.zero = i
            assert not torch.allclose(model(x), full), f"level {i} does not reach the logits"
    # The coarsest level reaches the logits through the branch too, not only through the top-down path.
    with torch.no_grad():
        model.head[3][0].conv.weight.zero_()
        stub.zero = None
        assert not torch.allclose(model(x), full)


def test_gaps_between_reductions_and_a_plain_list_feature_info():
    stub = Stub(chans=(8, 16), reductions=(8, 32), size=(45, 64))
    stub.feature_info = [dict(d) for d in stub.feature_info]  # a plain list of dicts, as timm's source
    model = SemanticFPN(stub, 2, channels=8, head_channels=8)
    assert model.upsampling_steps == (0, 2)
    assert model(torch.randn(1, 3, 45, 64)).shape == (1, 2, 45, 64)


def test_attention_and_position_reach_the_backbone():
    model = segmentation_model("resnet18", num_classes=2, attention="se", position="after_conv1")
    reference_backbone = create_model("resnet18", attention="se", position="after_conv1", features_only=True)
    assert [n for n, _ in model.backbone.named_parameters()] == [
        n for n, _ in reference_backbone.named_parameters()
    ]
    assert any(".attn." in n for n, _ in model.backbone.named_parameters())


# --- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_classes": 0}, "num_classes"),
        ({"num_classes": 2.5}, "num_classes"),
        ({"channels": 0}, "channels"),
        ({"head_channels": 60}, "head_channels"),
        ({"head_channels": 0}, "head_channels"),
        ({"groups": 0}, "groups"),
    ],
)
def test_bad_options(kwargs, match):
    kwargs = {"num_classes": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        SemanticFPN(Stub(), kwargs.pop("num_classes"), **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_classes": 0}, "num_classes"),
        ({"num_classes": 2, "channels": 0}, "channels"),
        ({"num_classes": 2, "head_channels": 60}, "head_channels"),
        ({"num_classes": 2, "features_only": False}, "features_only"),
    ],
)
def test_bad_segmentation_model_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        segmentation_model("resnet18", **kwargs)


@pytest.mark.parametrize("reductions", [(4, 12, 24, 48), (4, 8, 8, 16), (8, 4, 16, 32), (6, 8, 16, 32)])
def test_reductions_not_powers_of_two_apart(reductions):
    with pytest.raises(ValueError, match=r"backbone\.feature_info reductions"):
        SemanticFPN(Stub(reductions=reductions), 3)


@pytest.mark.parametrize(
    "backbone, match",
    [
        (nn.Conv2d(3, 8, 3), "backbone must describe its feature maps in feature_info"),
        ("resnet18", "backbone must be an nn.Module"),
        (create_model("resnet20"), "features_only=True"),
        (create_model("resnet18_1d", features_only=True), "spatial_dims"),
    ],
    ids=["no_feature_info", "not_a_module", "classifier", "one_d"],
)
def test_bad_backbones(backbone, match):
    with pytest.raises(ValueError, match=match):
        SemanticFPN(backbone, 3)


def test_empty_feature_info():
    stub = Stub()
    stub.feature_info = FeatureInfo()
    with pytest.raises(ValueError, match="backbone.feature_info"):
        SemanticFPN(stub, 3)


# --- determinism and state dicts --------------------------------------------------------------------


def test_eval_is_deterministic_and_state_dict_round_trips():
    torch.manual_seed(0)
    model = randomize_bn(perturb(segmentation_model("resnet18", num_classes=5, attention="se"))).eval()
    x = torch.randn(2, 3, 40, 56)
    with torch.no_grad():
        first, second = model(x), model(x)
    assert torch.equal(first, second)
    torch.manual_seed(1)
    fresh = segmentation_model("resnet18", num_classes=5, attention="se").eval()
    with torch.no_grad():
        assert not torch.allclose(fresh(x), first)
        fresh.load_state_dict(model.state_dict())
        assert torch.equal(fresh(x), first)
