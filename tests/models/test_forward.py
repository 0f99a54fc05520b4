"""Forward and backward of every model with every registered attention; features, dtypes, init."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import plugattn
from plugattn.models import ResidualBlock, ResNet
from tests.models.helpers import attention_hooks, count, train_step
from tests.models.test_registry import ALL_MODELS, CIFAR_MODELS, sized_for

ATTENTION = plugattn.list_attention()


def input_size(name: str) -> int:
    return 32 if name in CIFAR_MODELS else 64


def forward_backward(model: nn.Module, x: torch.Tensor, num_classes: int) -> None:
    model.train()
    y = model(x)
    assert y.shape == (x.shape[0], num_classes)
    assert torch.isfinite(y).all()
    y.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"no gradient reached {name}"
        assert torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("attention", ATTENTION)
def test_resnet20_with_every_attention(attention):
    torch.manual_seed(0)
    model = plugattn.create_model("resnet20", attention=attention)
    assert all(b.has_attention for b in model.modules() if isinstance(b, ResidualBlock))
    forward_backward(model, torch.randn(2, 3, 16, 16), 10)


@pytest.mark.parametrize(
    "name,attention,size",
    [
        ("resnet20", "ham", 64),
        ("resnet50", "scsa", 64),
        ("mobilenet_v2", "scsa", 64),
        ("resnet18", "ham", 96),
    ],
)
def test_headline_combinations(name, attention, size):
    torch.manual_seed(0)
    model = plugattn.create_model(name, attention=attention)
    forward_backward(model, torch.randn(2, 3, size, size), model_num_classes(model))


def model_num_classes(model: nn.Module) -> int:
    return model.fc.out_features if isinstance(model, ResNet) else model.classifier.out_features


# One model per family by default; the other depths of a family (same code, more blocks) are slow.
FAST_MODELS = ["resnet20", "wrn16_8", "resnext29_8x64d", "resnet18", "resnet50", "resnext50_32x4d",
               "wide_resnet18_2", "mobilenet_v2", "swin_t"]  # fmt: skip
MODEL_PARAMS = [n if n in FAST_MODELS else pytest.param(n, marks=pytest.mark.slow) for n in ALL_MODELS]


@pytest.mark.parametrize("name", MODEL_PARAMS)
def test_every_model_trains_a_step(name):
    torch.manual_seed(0)
    size = 8 if name.startswith("wrn28") else 16 if name in CIFAR_MODELS else 32
    model = plugattn.create_model(name, num_classes=5, **sized_for(name, size))
    train_step(model, torch.randn(2, 3, size, size), 5)


@pytest.mark.parametrize("attention", ATTENTION)
@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_model_builds_with_every_attention_at_its_defaults(name, attention):
    """Every module fits every backbone's widths with its default options (on the meta device: no
    memory, no time); the one training step per pair is the slow test below."""
    model = plugattn.create_model(name, attention=attention, device="meta")
    hooks = attention_hooks(model)
    assert hooks and all(h.has_attention for h in hooks)


@pytest.mark.parametrize("attention", ATTENTION)
@pytest.mark.parametrize("name", ["resnet20", "resnet50", "mobilenet_v2"])
def test_every_attention_trains_a_step_in_the_main_backbones(name, attention):
    torch.manual_seed(0)
    model = plugattn.create_model(name, attention=attention, num_classes=5)
    train_step(model, torch.randn(2, 3, input_size(name), input_size(name)), 5)


@pytest.mark.slow
@pytest.mark.parametrize("attention", ATTENTION)
@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_model_with_every_attention(name, attention):
    torch.manual_seed(0)
    size = input_size(name)
    model = plugattn.create_model(name, attention=attention, num_classes=7, **sized_for(name, size))
    forward_backward(model, torch.randn(2, 3, size, size), 7)


@pytest.mark.parametrize("name", ["resnet20", "resnet18", "mobilenet_v2"])
def test_grey_images_need_no_copy(name):
    model = plugattn.create_model(name, in_chans=1, attention="ham", num_classes=10).eval()
    first = model.conv1 if isinstance(model, ResNet) else model.conv_stem
    assert first.in_channels == 1
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_dtype_and_device_reach_every_parameter():
    model = plugattn.create_model("resnet20", attention="ham", dtype=torch.float64, device="cpu")
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    assert model(torch.randn(2, 3, 16, 16, dtype=torch.float64)).dtype == torch.float64
    meta = plugattn.create_model("mobilenet_v2", attention="scsa", device="meta")
    assert {p.device.type for p in meta.parameters()} == {"meta"}


def test_factory_attention_without_factory_keywords_follows_the_model_dtype():
    """A user factory ``channels -> module`` need not take device/dtype; the model moves it."""
    model = plugattn.create_model("resnet20", attention=lambda c: nn.Conv2d(c, c, 1), dtype=torch.float64)
    assert model.layer1[0].attn.weight.dtype == torch.float64
    assert model.layer1[0].attn_position == "end"


# --- features_only ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,size,channels,reductions",
    [
        ("resnet20", 32, [16, 32, 64], [1, 2, 4]),
        ("wrn16_8", 32, [128, 256, 512], [1, 2, 4]),
        ("resnext29_8x64d", 16, [256, 512, 1024], [1, 2, 4]),
        ("resnet18", 64, [64, 128, 256, 512], [4, 8, 16, 32]),
        ("resnet50", 64, [256, 512, 1024, 2048], [4, 8, 16, 32]),
        ("mobilenet_v2", 64, [16, 24, 32, 96, 320], [2, 4, 8, 16, 32]),
    ],
)
def test_features_only(name, size, channels, reductions):
    model = plugattn.create_model(name, features_only=True, attention="ham").eval()
    assert [f["num_chs"] for f in model.feature_info] == channels
    assert [f["reduction"] for f in model.feature_info] == reductions
    modules = dict(model.named_modules())
    assert all(f["module"] in modules for f in model.feature_info)
    # timm's accessors, which FPN builders written for timm backbones call
    assert model.feature_info.channels() == channels and model.feature_info.reduction() == reductions
    assert model.feature_info.module_name() == [f["module"] for f in model.feature_info]
    assert not hasattr(model, "fc") and not hasattr(model, "classifier")
    with torch.no_grad():
        features = model(torch.randn(1, 3, size, size))
    assert [tuple(f.shape) for f in features] == [
        (1, c, math.ceil(size / r), math.ceil(size / r)) for c, r in zip(channels, reductions, strict=True)
    ]


def test_features_feed_a_neck():
    """An FPN-style neck built from feature_info alone consumes the attention backbone."""
    backbone = plugattn.create_model("resnet18", features_only=True, attention="scsa", stem="small")
    lateral = nn.ModuleList(nn.Conv2d(f["num_chs"], 32, 1) for f in backbone.feature_info)
    feats = backbone(torch.randn(2, 3, 16, 16))
    top = lateral[-1](feats[-1])
    for f, lat in zip(reversed(feats[:-1]), reversed(lateral[:-1]), strict=True):
        top = lat(f) + nn.functional.interpolate(top, size=f.shape[-2:], mode="nearest")
    assert top.shape == (2, 32, 16, 16)
    top.mean().backward()


# --- initialisation ---------------------------------------------------------------------------------


def test_kaiming_fan_out_and_bn_init():
    torch.manual_seed(0)
    model = plugattn.create_model("resnet50", device="cpu")
    w = model.layer4[0].conv2.weight  # (512, 512, 3, 3): fan_out = 512 * 9
    assert w.std().item() == pytest.approx(math.sqrt(2 / (512 * 9)), rel=0.02)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in bns)


def test_zero_init_residual_zeroes_the_last_bn_of_each_branch():
    r20 = plugattn.create_model("resnet20", zero_init_residual=True, attention="ham")
    blocks = [b for b in r20.modules() if isinstance(b, ResidualBlock)]
    assert all(torch.all(b.bn2.weight == 0) and torch.all(b.bn1.weight == 1) for b in blocks)
    default = plugattn.create_model("resnet20")
    assert all(torch.all(b.bn2.weight == 1) for b in default.modules() if isinstance(b, ResidualBlock))
    mnv2 = plugattn.create_model("mobilenet_v2", zero_init_residual=True)
    for b in mnv2.modules():
        if isinstance(b, ResidualBlock):  # only branches added to a shortcut start at zero
            assert torch.all(b.bn3.weight == 0) == b.use_res_connect
    wrn = plugattn.create_model("wrn16_8", zero_init_residual=True)
    assert all(torch.all(b.conv2.weight == 0) for b in wrn.modules() if isinstance(b, ResidualBlock))


def test_mobilenet_classifier_init():
    torch.manual_seed(0)
    model = plugattn.create_model("mobilenet_v2")
    assert model.classifier.weight.std().item() == pytest.approx(0.01, rel=0.02)
    assert torch.all(model.classifier.bias == 0)


def test_attention_keeps_its_own_init():
    """The backbone's init skips attention modules: they initialise themselves, as when retrofitted."""
    model = plugattn.create_model("resnet20", attention="ham")
    conv = model.layer1[0].attn.spatial.conv  # (1, 2, 7, 7): PyTorch default bound 1/sqrt(fan_in = 98)
    assert conv.weight.abs().max().item() <= 1 / math.sqrt(98)
    assert model.layer1[0].attn.channel.alpha.item() == 0.5


def test_counts_do_not_depend_on_features_only_stages_or_position_when_there_is_no_attention():
    base = count(plugattn.create_model("resnet20", device="meta"))
    assert (
        count(plugattn.create_model("resnet20", device="meta", position="after_conv1", stages=(0,))) == base
    )


@pytest.mark.parametrize("attention,kwargs", [("ema", {"factor": 8}), ("sa", {"groups": 8})])
def test_width_constrained_modules_take_explicit_groups_through_attn_kwargs(attention, kwargs):
    model = plugattn.create_model("resnet20", attention=attention, attn_kwargs=kwargs)
    forward_backward(model, torch.randn(2, 3, 16, 16), 10)
