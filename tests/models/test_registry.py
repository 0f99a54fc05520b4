"""The model registry and create_model: names, defaults, options and their errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import plugattn
from plugattn.models import ResNet, SwinTransformer, model_entry, register_model
from plugattn.models.placement import POSITIONS

ALL_MODELS = [
    "mobilenet_v2",
    "repvgg_a0",
    "repvgg_a1",
    "repvgg_a2",
    "repvgg_b0",
    "resnet101",
    "resnet110",
    "resnet18",
    "resnet20",
    "resnet32",
    "resnet34",
    "resnet44",
    "resnet50",
    "resnet56",
    "resnext29_8x64d",
    "resnext50_32x4d",
    "swin_s",
    "swin_t",
    "wide_resnet18_2",
    "wrn16_8",
    "wrn28_10",
]
# Models of signals and volumes (tests/models/test_signals_volumes.py): not image models, so the
# image tests parametrized over ALL_MODELS leave them out.
OTHER_DIMS_MODELS = ["eegnet", "resnet10_3d", "resnet18_1d"]
CIFAR_MODELS = {
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet110",
    "wrn16_8",
    "wrn28_10",
    "resnext29_8x64d",
}


def sized_for(name: str, size: int) -> dict:
    """The options that fit a model to ``size``×``size`` test images: Swin Transformers are built for one
    input size (their shift masks) and need a window that tiles its maps; the convolutional models take
    any size as they are."""
    return {"img_size": size, "window_size": 4} if model_entry(name).family == "swin" else {}


def test_list_models_is_sorted_and_complete():
    assert plugattn.list_models() == sorted(ALL_MODELS + OTHER_DIMS_MODELS)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_default_num_classes(name):
    m = plugattn.create_model(name, device="meta")
    head = m.fc if isinstance(m, ResNet) else m.head.fc if isinstance(m, SwinTransformer) else m.classifier
    assert head.out_features == (10 if name in CIFAR_MODELS else 1000)
    assert model_entry(name).num_classes == head.out_features
    assert model_entry(name).paper.startswith(("He", "Zagoruyko", "Xie", "Sandler", "Ding", "Liu"))


def test_names_are_case_insensitive():
    assert isinstance(plugattn.create_model("ResNet20", device="meta"), ResNet)


def test_unknown_name_lists_the_known_ones():
    known = r"model must be one of eegnet, mobilenet_v2, .*resnet20.*; got 'resnet19'"
    with pytest.raises(ValueError, match=known):
        plugattn.create_model("resnet19")


def test_duplicate_registration_raises():
    with pytest.raises(ValueError, match=r"model 'resnet20' is already registered"):
        register_model("resnet20", ResNet, {}, num_classes=10, paper="")


@pytest.mark.parametrize("num_classes", [0, -1, 2.5, True, "10"])
def test_bad_num_classes(num_classes):
    with pytest.raises(ValueError, match=r"num_classes must be"):
        plugattn.create_model("resnet20", num_classes=num_classes)


@pytest.mark.parametrize("name", ["resnet20", "mobilenet_v2"])
@pytest.mark.parametrize("in_chans", [0, 1.5, None])
def test_bad_in_chans(name, in_chans):
    with pytest.raises(ValueError, match=r"in_chans must be"):
        plugattn.create_model(name, in_chans=in_chans)


@pytest.mark.parametrize("name", ["resnet20", "mobilenet_v2"])
def test_bad_position(name):
    with pytest.raises(ValueError, match=r"position must be one of 'end', .*; got 'middle'"):
        plugattn.create_model(name, attention="ham", position="middle")


def test_position_the_block_lacks():
    with pytest.raises(ValueError, match=r"'after_conv3' needs 3 convs .* BasicBlock has 2"):
        plugattn.create_model("resnet20", attention="ham", position="after_conv3")


@pytest.mark.parametrize(
    "stages,match",
    [
        ((3,), r"stages entries must lie in \[0, 2\] .* got 3"),
        ((-1,), r"stages entries must lie in \[0, 2\]"),
        ((True,), r"stages entry must be an integer"),
        ("0", r"stages must be a sequence"),
        (1, r"stages must be a sequence"),
    ],
)
def test_bad_stages(stages, match):
    with pytest.raises(ValueError, match=match):
        plugattn.create_model("resnet20", attention="ham", stages=stages)


def test_mobilenet_has_five_stages():
    with pytest.raises(ValueError, match=r"\[0, 4\] \(this model has 5 stages\), got 5"):
        plugattn.create_model("mobilenet_v2", attention="ham", stages=(5,))


def test_unknown_option_is_named():
    with pytest.raises(ValueError, match=r"resnet20 takes no option 'widht'; its options: .*widths"):
        plugattn.create_model("resnet20", widht=2)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"shortcut": "C"}, r"shortcut must be one of 'A', 'B'; got 'C'"),
        ({"stem": "deep"}, r"stem must be one of 'imagenet', 'small', 'video'; got 'deep'"),
        ({"drop_rate": 0.3}, r"drop_rate applies to pre-activation blocks only"),
        ({"groups": 2}, r"BasicBlock takes groups=1 and base_width=64 only, got groups=2"),
        ({"layers": (3, 3)}, r"layers and widths must be non-empty sequences of equal length"),
    ],
)
def test_bad_resnet_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plugattn.create_model("resnet20", **kwargs)


def test_unknown_attention_name():
    with pytest.raises(ValueError, match=r"attention must be one of .*; got 'hma'"):
        plugattn.create_model("resnet20", attention="hma")


def test_option_b_shortcut_adds_projections():
    a = plugattn.create_model("resnet20", device="meta")
    b = plugattn.create_model("resnet20", shortcut="B", device="meta")
    # two projections: 16 -> 32 and 32 -> 64, each a 1x1 conv and a BN (weight + bias)
    assert sum(p.numel() for p in b.parameters()) - sum(p.numel() for p in a.parameters()) == (
        16 * 32 + 2 * 32 + 32 * 64 + 2 * 64
    )
    assert isinstance(b.layer2[0].downsample, nn.Sequential)
    assert not any(p.numel() for p in a.layer2[0].downsample.parameters())


def test_small_stem_for_imagenet_layout():
    m = plugattn.create_model("resnet18", stem="small", num_classes=10)
    assert m.conv1.kernel_size == (3, 3) and m.conv1.stride == (1, 1)
    assert isinstance(m.maxpool, nn.Identity)
    assert [f["reduction"] for f in m.feature_info] == [1, 2, 4, 8]
    assert m(torch.randn(2, 3, 16, 16)).shape == (2, 10)


def test_positions_vocabulary():
    assert POSITIONS == ("end", "before_last_conv", "after_conv1", "after_conv2", "after_conv3")
