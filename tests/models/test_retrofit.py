"""insert_attention: torchvision/timm-structured models (look-alikes here; the real libraries in
tests/interop) and ours, at the same positions as native blocks; errors; state dicts; pickling."""

from __future__ import annotations

import copy
import pickle
import re

import pytest
import torch
from torch import nn

import plugattn
from plugattn.models import AttentionAfter, AttentionBefore, ResidualBlock, find_blocks
from tests.models import lookalikes as la
from tests.models.helpers import count, randomize_bn, train_step

SCSA_RESNET50 = 16 * (64 * 3 + 128 * 4 + 256 * 6 + 512 * 3)  # 60,416
SCSA_MOBILENET_V2 = 114_176


def test_lookalikes_have_torchvision_counts():
    assert count(la.tv_resnet18()) == 11_689_512
    assert count(la.tv_resnet50()) == count(la.TimmResNet50()) == 25_557_032
    assert count(la.TVMobileNetV2()) == 3_504_872


@pytest.mark.parametrize("build", [la.tv_resnet50, la.TimmResNet50], ids=["torchvision", "timm"])
def test_scsa_into_a_resnet50_at_the_reference_wiring_trains(build):
    torch.manual_seed(0)
    model = build(num_classes=10)
    before = count(model)
    assert plugattn.insert_attention(model, "scsa") is model
    assert count(model) - before == SCSA_RESNET50
    block = model.layer3[0]
    assert isinstance(block.conv3, AttentionBefore) and block.conv3.attn.channels == 256
    assert block.conv3.in_channels == 256  # attribute reads fall through to the wrapped conv
    train_step(model, torch.randn(2, 3, 32, 32), 10)


def test_timm_resnet_end_attention_fills_the_se_hook():
    model = la.TimmResNet50(num_classes=10)
    plugattn.insert_attention(model, "ham")
    assert isinstance(model.layer1[0].se, plugattn.HAM) and model.layer1[0].se.channels == 256
    assert isinstance(model.layer1[0].bn3, nn.BatchNorm2d)
    assert "layer4.2.se.channel.conv.weight" in model.state_dict()


def test_torchvision_mobilenet_v2_scsa_appends_to_the_sequentials():
    model = la.TVMobileNetV2(num_classes=10)
    keys, before = set(model.state_dict()), count(model)
    plugattn.insert_attention(model, "scsa")
    assert count(model) - before == SCSA_MOBILENET_V2
    assert keys <= set(model.state_dict())  # existing keys unchanged
    assert isinstance(model.features[1].conv[0][3], plugattn.SCSA)  # t = 1: after the depthwise group
    assert isinstance(model.features[2].conv[1][3], plugattn.SCSA)  # t = 6: after the depthwise group
    train_step(model, torch.randn(2, 3, 32, 32), 10)


def test_torchvision_mobilenet_v2_end_is_after_the_projection_bn():
    model = la.TVMobileNetV2(num_classes=10)
    plugattn.insert_attention(model, "ham", position="end")
    assert isinstance(model.features[2].conv[4], plugattn.HAM) and model.features[2].conv[4].channels == 24
    assert isinstance(model.features[1].conv[3], plugattn.HAM)


def test_timm_efficientnet_blocks():
    model = la.TimmMobileNetLike()
    plugattn.insert_attention(model, "scsa")  # before_last_conv: timm's own `se` hook after the depthwise
    assert all(
        isinstance(b.se, plugattn.SCSA) for b in model.modules() if isinstance(b, la.TimmInvertedResidual)
    )
    other = la.TimmMobileNetLike()
    plugattn.insert_attention(other, "ham")  # end: after bn3
    assert isinstance(other.blocks[1][0].bn3, AttentionAfter) and other.blocks[1][0].bn3.attn.channels == 24
    train_step(other, torch.randn(2, 3, 16, 16), 10)


def to_native_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Retrofit keys -> plugattn block keys: `<block>.<x>.attn.*` -> `<block>.attn.*`, drop `.module`."""
    out = {}
    for k, v in state.items():
        k = re.sub(r"\.(\w+)\.attn\.", ".attn.", k).replace(".module.", ".")
        out[k] = v
    return out


@pytest.mark.parametrize("attention", ["ham", "scsa", "se"])
@pytest.mark.parametrize("position", [None, "end", "after_conv1"])
def test_retrofit_equals_native_blocks(attention, position):
    """A torchvision ResNet-18 retrofitted computes what our resnet18 built with attention computes."""
    torch.manual_seed(0)
    tv = randomize_bn(la.tv_resnet18(num_classes=10))
    plugattn.insert_attention(tv, attention, position=position)
    ours = plugattn.create_model("resnet18", attention=attention, position=position, num_classes=10)
    ours.load_state_dict(to_native_keys(tv.state_dict()))  # strict: same tensors, same places
    tv.eval()
    ours.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(tv(x), ours(x))


def test_plain_torchvision_weights_load_into_our_resnet():
    tv = randomize_bn(la.tv_resnet50(num_classes=10)).eval()
    ours = plugattn.create_model("resnet50", num_classes=10).eval()
    ours.load_state_dict(tv.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(tv(x), ours(x))


def test_into_our_model_equals_the_native_one():
    torch.manual_seed(0)
    model = plugattn.create_model("resnet50", num_classes=10, device="meta")
    plugattn.insert_attention(model, "scsa", stages=(1, 2))
    native = plugattn.create_model("resnet50", attention="scsa", stages=(1, 2), num_classes=10, device="meta")
    assert list(model.state_dict()) == list(native.state_dict())
    assert [b.attn_position for b in model.modules() if isinstance(b, ResidualBlock)] == [
        b.attn_position for b in native.modules() if isinstance(b, ResidualBlock)
    ]
    with pytest.raises(ValueError, match=r"block 'layer2.0' already has attention \(SCSA\)"):
        plugattn.insert_attention(model, "ham")


def test_stages_are_counted_by_resolution():
    model = la.tv_resnet18()
    plugattn.insert_attention(model, "ham", stages=(3,))
    assert all(isinstance(b.bn2, AttentionAfter) for b in model.layer4)
    assert not any(
        isinstance(b.bn2, AttentionAfter) for s in (model.layer1, model.layer2, model.layer3) for b in s
    )
    mobile = la.TVMobileNetV2()
    with pytest.raises(ValueError, match=r"\[0, 4\] \(this model has 5 stages\), got 5"):
        plugattn.insert_attention(mobile, "ham", stages=(5,))
    names = [n for n, _, _ in find_blocks(mobile)]
    assert names[0] == "features.1" and len(names) == 17


def test_unknown_structure_says_what_it_looked_for():
    with pytest.raises(
        ValueError, match=r"found no residual block in Sequential; it looks for plugattn blocks.*Bottle"
    ):
        plugattn.insert_attention(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()), "ham")


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"position must be one of"):
        plugattn.insert_attention(la.tv_resnet18(), "ham", position="middle")
    with pytest.raises(ValueError, match=r"'after_conv3' needs 3 convs .*ResNet BasicBlock 'layer1.0' has 2"):
        plugattn.insert_attention(la.tv_resnet18(), "ham", position="after_conv3")
    with pytest.raises(ValueError, match=r"attention must be one of"):
        plugattn.insert_attention(la.tv_resnet18(), "hma")


def test_a_failure_leaves_the_model_unchanged():
    model = la.tv_resnet18()
    before = copy.deepcopy(model.state_dict())

    # The factory accepts layer1..3's widths and rejects layer4's: nothing may have changed.
    def picky(c: int) -> nn.Module:
        if c == 512:
            raise ValueError("no 512")
        return nn.Identity()

    with pytest.raises(ValueError, match="no 512"):
        plugattn.insert_attention(model, picky)
    assert not any(isinstance(m, AttentionAfter) for m in model.modules())
    assert model.state_dict().keys() == before.keys()


def test_none_is_a_no_op():
    model = la.tv_resnet18()
    assert plugattn.insert_attention(model, None) is model
    assert plugattn.insert_attention(model, "none") is model
    assert count(model) == 11_689_512


def test_wrapping_twice_at_the_same_place_raises():
    model = la.tv_resnet18()
    plugattn.insert_attention(model, "ham", position="end")
    with pytest.raises(ValueError, match=r"already has attention at 'bn2'"):
        plugattn.insert_attention(model, "ham", position="end")
    plugattn.insert_attention(model, "ham", position="after_conv1")  # another place is fine
    assert isinstance(model.layer1[0].conv2, AttentionBefore)


def test_attention_follows_the_model_dtype():
    model = la.tv_resnet18().double()
    plugattn.insert_attention(model, "ham")
    assert {p.dtype for p in model.parameters()} == {torch.float64}


def test_state_dict_keys_and_loading():
    torch.manual_seed(0)
    plain = randomize_bn(la.tv_resnet18(num_classes=10))
    checkpoint = copy.deepcopy(plain.state_dict())
    model = copy.deepcopy(plain)
    plugattn.insert_attention(model, "ham")
    keys = set(model.state_dict())
    assert "layer1.0.bn2.module.weight" in keys and "layer1.0.bn2.attn.spatial.conv.weight" in keys
    # A checkpoint from before the retrofit loads: only the attention's keys are missing.
    result = model.load_state_dict(checkpoint, strict=False)
    assert not result.unexpected_keys
    assert result.missing_keys and all(".attn." in k for k in result.missing_keys)
    torch.testing.assert_close(model.layer1[0].bn2.module.running_mean, plain.layer1[0].bn2.running_mean)
    # A retrofitted checkpoint loads strictly into a model retrofitted the same way.
    other = la.tv_resnet18(num_classes=10)
    plugattn.insert_attention(other, "ham")
    other.load_state_dict(model.state_dict())


@pytest.mark.parametrize("attention", ["ham", "scsa"])
def test_pickle_and_deepcopy(attention):
    torch.manual_seed(0)
    model = la.tv_resnet18(num_classes=10)
    plugattn.insert_attention(model, attention)
    model.eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        for clone in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
            torch.testing.assert_close(clone.eval()(x), ref)


@pytest.mark.parametrize("attention", plugattn.list_attention())
def test_every_attention_trains_in_a_retrofitted_torchvision_resnet(attention):
    """torchvision adds the shortcut in place (`out += identity`) onto the attention's output."""
    model = la.tv_resnet18(num_classes=10)
    plugattn.insert_attention(model, attention)
    train_step(model, torch.randn(2, 3, 32, 32), 10)
