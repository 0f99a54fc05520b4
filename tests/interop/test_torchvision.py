"""plugattn with the real torchvision: retrofit into ResNet-18/50 and MobileNetV2, the retrofit computing
what plugattn's own blocks compute, torchvision's weights in plugattn's ResNets, and a plugattn backbone
inside torchvision's Faster R-CNN taking a training step."""

from __future__ import annotations

import re
from collections import OrderedDict

import pytest
import torch
from torch import nn

import plugattn
from tests.interop._env import require
from tests.models import lookalikes as la
from tests.models.helpers import count, randomize_bn, train_step

tv = require("torchvision")
detection = require("torchvision.models.detection")
tv_ops = require("torchvision.ops")

ATTENTION = plugattn.list_attention()
SCSA_MOBILENET_V2 = 114_176


@pytest.mark.parametrize("attention", ATTENTION)
@pytest.mark.parametrize("model_name", ["resnet18", "resnet50", "mobilenet_v2"])
def test_every_module_into_torchvision_models(model_name, attention):
    model = getattr(tv.models, model_name)(num_classes=10)
    plugattn.insert_attention(model, attention)
    cls = plugattn.attention_entry(attention).cls
    expected = {"resnet18": 8, "resnet50": 16, "mobilenet_v2": 17}[model_name]
    assert sum(isinstance(m, cls) for m in model.modules()) == expected
    train_step(model, torch.randn(2, 3, 64, 64), 10)


def to_native_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Retrofit keys -> plugattn block keys: `<block>.<x>.attn.*` -> `<block>.attn.*`, drop `.module`."""
    return {re.sub(r"\.(\w+)\.attn\.", ".attn.", k).replace(".module.", "."): v for k, v in state.items()}


@pytest.mark.parametrize("attention", ["ham", "scsa", "cbam"])
@pytest.mark.parametrize("position", [None, "end", "after_conv1"])
@pytest.mark.parametrize("model_name", ["resnet18", "resnet50"])
def test_retrofit_computes_what_our_blocks_compute(model_name, attention, position):
    torch.manual_seed(0)
    theirs = randomize_bn(getattr(tv.models, model_name)(num_classes=10))
    plugattn.insert_attention(theirs, attention, position=position)
    ours = plugattn.create_model(model_name, attention=attention, position=position, num_classes=10)
    ours.load_state_dict(to_native_keys(theirs.state_dict()))  # strict: the same tensors in the same places
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(theirs.eval()(x), ours.eval()(x))


@pytest.mark.parametrize("model_name", ["resnet18", "resnet50", "resnext50_32x4d"])
def test_torchvision_weights_load_into_our_resnets(model_name):
    theirs = randomize_bn(getattr(tv.models, model_name)()).eval()
    ours = plugattn.create_model(model_name).eval()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(theirs(x), ours(x))


def test_mobilenet_v2_scsa_counts_and_keeps_keys():
    model = tv.models.mobilenet_v2()
    keys = set(model.state_dict())
    plugattn.insert_attention(model, "scsa")
    assert count(model) == 3_504_872 + SCSA_MOBILENET_V2
    assert keys <= set(model.state_dict())  # torchvision's checkpoints still load
    assert count(tv.models.mobilenet_v2()) == count(plugattn.create_model("mobilenet_v2"))


def test_the_lookalikes_have_torchvisions_structure():
    """The core suite retrofits look-alikes; they must be what torchvision builds."""

    def shapes(m: nn.Module) -> dict:
        return {k: v.shape for k, v in m.state_dict().items()}

    assert shapes(la.tv_resnet18()) == shapes(tv.models.resnet18())
    assert shapes(la.tv_resnet50()) == shapes(tv.models.resnet50())
    assert shapes(la.TVMobileNetV2()) == shapes(tv.models.mobilenet_v2())


# --- detection ------------------------------------------------------------------------------------


class FeaturesWithFPN(nn.Module):
    """A plugattn ``features_only`` backbone and torchvision's FPN: what torchvision's detectors take
    (``out_channels`` and an ordered dict of maps)."""

    def __init__(self, body: nn.Module, out_channels: int = 64) -> None:
        super().__init__()
        self.body = body
        self.fpn = tv_ops.FeaturePyramidNetwork(
            body.feature_info.channels(),
            out_channels,
            extra_blocks=tv_ops.feature_pyramid_network.LastLevelMaxPool(),
        )
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict:
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(self.body(x))))


def detection_batch(n: int = 2, size: int = 128):
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, size, size, generator=g) for _ in range(n)]
    targets = [
        {
            "boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0], [70.0, 20.0, 120.0, 90.0]]),
            "labels": torch.tensor([1, 2]),
        }
        for _ in range(n)
    ]
    return images, targets


@pytest.mark.parametrize("attention", ["ham", "scsa"])
def test_plugattn_backbone_trains_inside_faster_rcnn(attention):
    torch.manual_seed(0)
    backbone = FeaturesWithFPN(plugattn.create_model("resnet18", attention=attention, features_only=True))
    model = detection.FasterRCNN(backbone, num_classes=3, min_size=128, max_size=128)
    images, targets = detection_batch()
    model.train()
    losses = model(images, targets)
    assert {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"} <= set(losses)
    loss = sum(losses.values())
    assert torch.isfinite(loss)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    opt.zero_grad()
    loss.backward()
    attn = [p for n, p in model.named_parameters() if ".attn." in n]
    assert attn and all(p.grad is not None and torch.isfinite(p.grad).all() for p in attn)
    opt.step()
    model.eval()
    with torch.no_grad():
        out = model(images[:1])
    assert {"boxes", "labels", "scores"} <= set(out[0])


def test_torchvisions_backbone_with_fpn_takes_our_resnet():
    """torchvision's own BackboneWithFPN picks layer1..layer4 out of our ResNet by name."""
    body = plugattn.create_model("resnet18", attention="scsa")
    backbone = detection.backbone_utils.BackboneWithFPN(
        body, {f"layer{i}": str(i - 1) for i in range(1, 5)}, [64, 128, 256, 512], 64
    )
    model = detection.RetinaNet(backbone, num_classes=3, min_size=128, max_size=128)
    images, targets = detection_batch()
    losses = model.train()(images, targets)
    assert set(losses) == {"classification", "bbox_regression"}
    sum(losses.values()).backward()
