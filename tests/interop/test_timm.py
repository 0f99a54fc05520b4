"""plugattn with the real timm: attn_layer in timm's ResNets, insert_attention into timm's ResNet, ResNeXt,
MobileNetV3 and EfficientNet, features that timm-style consumers read, and the SE/ECA layers' parity."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import plugattn
from plugattn.attention.eca import ECA
from plugattn.attention.se import SE
from plugattn.models import AttentionAfter, AttentionBefore
from tests.interop._env import require
from tests.models import lookalikes as la
from tests.models.helpers import count, randomize_bn, train_step

timm = require("timm")

ATTENTION = plugattn.list_attention()
SCSA_RESNET50 = 16 * (64 * 3 + 128 * 4 + 256 * 6 + 512 * 3)  # 60,416: SCSA's 2C/... closed form per block


def attention_modules(model: nn.Module, name: str) -> list[nn.Module]:
    cls = plugattn.attention_entry(name).cls
    return [m for m in model.modules() if isinstance(m, cls)]


@pytest.mark.parametrize("attention", ATTENTION)
@pytest.mark.parametrize("model_name,blocks", [("resnet18", 8), ("resnet50", 16)])
def test_every_module_is_a_timm_attn_layer(model_name, blocks, attention):
    """timm builds ``attn_layer(channels)`` into each block's ``se`` hook, after the last BN."""
    cls = plugattn.attention_entry(attention).cls
    model = timm.create_model(model_name, pretrained=False, num_classes=10, block_args={"attn_layer": cls})
    hooks = [b.se for b in (*model.layer1, *model.layer2, *model.layer3, *model.layer4)]
    assert len(hooks) == blocks and all(isinstance(h, cls) for h in hooks)
    expansion = 4 if model_name == "resnet50" else 1
    assert model.layer4[0].se.channels == 512 * expansion
    train_step(model, torch.randn(2, 3, 64, 64), 10)


def test_insert_attention_fills_timms_own_hook_as_attn_layer_does():
    """At "end", insert_attention fills timm's empty ``se`` hook: the same keys and the same function as
    the model timm builds with ``attn_layer``."""
    torch.manual_seed(0)
    native = randomize_bn(
        timm.create_model("resnet50", num_classes=10, block_args={"attn_layer": plugattn.HAM})
    )
    retro = timm.create_model("resnet50", num_classes=10)
    plugattn.insert_attention(retro, "ham", position="end")
    retro.load_state_dict(native.state_dict())  # strict
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(retro.eval()(x), native.eval()(x))


@pytest.mark.parametrize("attention", ATTENTION)
@pytest.mark.parametrize(
    "model_name,blocks",
    [("resnet50", 16), ("resnext50_32x4d", 16), ("mobilenetv3_large_100", 15), ("efficientnet_b0", 16)],
)
def test_every_module_into_timm_models(model_name, blocks, attention):
    model = timm.create_model(model_name, pretrained=False, num_classes=10)
    plugattn.insert_attention(model, attention)
    assert len(attention_modules(model, attention)) == blocks
    train_step(model, torch.randn(2, 3, 64, 64), 10)


def test_scsa_into_timm_resnet50_at_the_reference_wiring():
    model = timm.create_model("resnet50", pretrained=False, num_classes=10)
    before = count(model)
    plugattn.insert_attention(model, "scsa")
    assert count(model) - before == SCSA_RESNET50
    assert isinstance(model.layer3[0].conv3, AttentionBefore) and model.layer3[0].conv3.attn.channels == 256


def test_timm_mobilenetv3_keeps_its_own_se_and_adds_ours():
    """MobileNetV3 blocks that already hold timm's SqueezeExcite keep it; ours goes after the last BN."""
    model = timm.create_model("mobilenetv3_large_100", pretrained=False, num_classes=10)
    own_se = sum(isinstance(m, timm.models._efficientnet_blocks.SqueezeExcite) for m in model.modules())
    plugattn.insert_attention(model, "ham", position="end")
    assert (
        sum(isinstance(m, timm.models._efficientnet_blocks.SqueezeExcite) for m in model.modules()) == own_se
    )
    assert all(
        isinstance(b.bn3, AttentionAfter) for b in model.blocks[1:].modules() if hasattr(b, "conv_pwl")
    )


def test_features_match_timms_resnet50_and_its_feature_info():
    """Same weights, same features as timm's features_only ResNet-50; feature_info reads as timm's."""
    theirs = randomize_bn(timm.create_model("resnet50", features_only=True, out_indices=(1, 2, 3, 4))).eval()
    ours = plugattn.create_model("resnet50", features_only=True).eval()
    ours.load_state_dict(theirs.state_dict())
    assert ours.feature_info.channels() == theirs.feature_info.channels() == [256, 512, 1024, 2048]
    assert ours.feature_info.reduction() == theirs.feature_info.reduction() == [4, 8, 16, 32]
    wrapped = timm.models.FeatureInfo(list(ours.feature_info), out_indices=(0, 1, 2, 3))  # timm's checks
    assert wrapped.channels() == ours.feature_info.channels()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        for a, b in zip(ours(x), theirs(x), strict=True):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("model_name", ["resnet50", "mobilenet_v2"])
def test_features_feed_a_neck_sized_from_feature_info(model_name):
    """The way timm-backbone detectors size their FPN: from ``feature_info.channels()``."""
    tv_ops = require("torchvision.ops")
    backbone = plugattn.create_model(model_name, features_only=True, attention="scsa")
    fpn = tv_ops.FeaturePyramidNetwork(backbone.feature_info.channels(), out_channels=64)
    feats = backbone(torch.randn(2, 3, 64, 64))
    out = fpn({str(i): f for i, f in enumerate(feats)})
    assert [v.shape[1] for v in out.values()] == [64] * len(feats)
    sum(v.sum() for v in out.values()).backward()
    assert all(p.grad is not None for p in backbone.parameters())


def randomized(module: nn.Module, seed: int) -> nn.Module:
    """Random weights (not the init, where biases are 0), so every parameter matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)
    return module


@pytest.mark.parametrize("channels", [64, 256])
def test_se_and_eca_match_timm(channels):
    x = torch.randn(2, channels, 6, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    ours = randomized(SE(channels, dtype=torch.float64), 1).eval()
    theirs = timm.layers.SEModule(channels, rd_channels=ours.rd_channels).double().eval()
    theirs.load_state_dict(ours.state_dict())
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-12, atol=1e-12)

    ours = randomized(ECA(channels, dtype=torch.float64), 2).eval()
    theirs = timm.layers.EcaModule(channels=channels).double().eval()
    theirs.load_state_dict(ours.state_dict())
    # ECA's kernel rule |log2(C)/2 + 1/2|_odd: 3 at 64 channels, 5 at 256
    assert theirs.conv.kernel_size == ours.conv.kernel_size == ((5,) if channels == 256 else (3,))
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-12, atol=1e-12)


def test_the_lookalikes_have_timms_structure():
    """The core suite retrofits look-alikes; they must be what timm builds (keys, shapes, block names)."""
    real = timm.create_model("resnet50", pretrained=False)
    fake = la.TimmResNet50()
    assert {k: v.shape for k, v in real.state_dict().items()} == {
        k: v.shape for k, v in fake.state_dict().items()
    }
    real_ir = next(
        m for m in timm.create_model("efficientnet_b0").modules() if type(m).__name__ == "InvertedResidual"
    )
    fake_ir = next(m for m in la.TimmMobileNetLike().modules() if isinstance(m, la.TimmInvertedResidual))
    names = {n for n, _ in fake_ir.named_children()}
    assert names <= {n for n, _ in real_ir.named_children()}, names - {n for n, _ in real_ir.named_children()}
    assert hasattr(real_ir, "has_skip") == hasattr(fake_ir, "has_skip")


@pytest.mark.parametrize("attention", ["ham", "scsa", "cbam"])
def test_attention_maps_and_cams_of_a_timm_built_model(attention):
    """`plugattn.attention_maps` finds every module timm built as attn_layer, by timm's own names, and a
    CAM runs on timm's last stage."""
    from plugattn.viz import class_activation_maps, module_maps

    cls = plugattn.attention_entry(attention).cls
    model = timm.create_model("resnet18", pretrained=False, num_classes=10, block_args={"attn_layer": cls})
    x = torch.randn(2, 3, 64, 64)
    maps = plugattn.attention_maps(model.eval(), x, names="layer4.*")
    assert maps and all(k.startswith("layer4.") and ".se." in k for k in maps)
    _, per_module = module_maps(model, x)
    assert [m.name for m in per_module][:2] == ["layer1.0.se", "layer1.1.se"] and len(per_module) == 8
    _, cams = class_activation_maps(model, x, methods=["gradcam"], layer="layer4")
    assert cams["gradcam"].shape == (2, 2, 2)
