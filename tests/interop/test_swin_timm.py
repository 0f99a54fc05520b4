"""plugattn's Swin Transformer against timm's (1.0.31): the same state-dict keys and shapes, timm's weights
loading strictly, the same logits and the same features, at the paper's sizes and at small, non-square
ones where windows are clipped per axis."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import plugattn
from plugattn.models import SwinTransformer
from tests.interop._env import require
from tests.models.helpers import count

timm = require("timm")

TIMM_NAMES = {"swin_t": "swin_tiny_patch4_window7_224", "swin_s": "swin_small_patch4_window7_224"}
TIMM_COUNTS = {"swin_t": 28_288_354, "swin_s": 49_606_258}  # timm's, 1000 classes
SMALL = {"embed_dim": 32, "depths": (2, 2, 6, 2), "num_heads": (1, 2, 4, 8)}


def perturbed(model: nn.Module, seed: int) -> nn.Module:
    """timm's initialisation plus N(0, 0.02²) on every parameter: zero biases, LayerNorm 1/0 and the
    bias tables all take part, and activations stay as the init keeps them."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return model.eval()


def loaded_pair(name: str, **kwargs) -> tuple[nn.Module, nn.Module]:
    """timm's model (perturbed) and ours with its state dict, loaded strictly."""
    torch.manual_seed(0)
    theirs = perturbed(timm.create_model(TIMM_NAMES[name], pretrained=False, **kwargs), 1)
    ours = plugattn.create_model(name, **kwargs).eval()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()
    }
    ours.load_state_dict(theirs.state_dict())  # strict
    return ours, theirs


@pytest.mark.parametrize("name", ["swin_t", "swin_s"])
def test_timm_weights_load_strictly_and_give_the_same_logits(name):
    ours, theirs = loaded_pair(name)
    assert count(ours) == count(theirs) == TIMM_COUNTS[name]
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "img_size,window_size",
    [(64, 4), (64, 2), ((64, 128), 4), (96, 6)],
    ids=["64w4", "64w2", "64x128w4", "96w6"],
)
def test_small_and_non_square_inputs_match(img_size, window_size):
    """Windows clipped where a map is at most the window (per axis: at 64×128 stage 2 is 4×8, so SW-MSA
    shifts along the width only), as timm clips them."""
    kwargs = {"img_size": img_size, "window_size": window_size, "num_classes": 7, **SMALL}
    ours, theirs = loaded_pair("swin_t", **kwargs)
    h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
    for stage_ours, stage_theirs in zip(ours.layers, theirs.layers, strict=True):
        for a, b in zip(stage_ours.blocks, stage_theirs.blocks, strict=True):
            assert (a.window, a.shift) == (tuple(b.window_size), tuple(b.shift_size))
    x = torch.randn(3, 3, h, w, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


def test_features_match_timms_features_only():
    """timm's features_only Swin returns NHWC maps (keys ``layers_i``); ours NCHW, the same values."""
    torch.manual_seed(0)
    full = perturbed(timm.create_model(TIMM_NAMES["swin_t"], pretrained=False), 1)
    state = {k: v for k, v in full.state_dict().items() if not k.startswith(("norm.", "head."))}
    theirs = timm.create_model(TIMM_NAMES["swin_t"], pretrained=False, features_only=True).eval()
    theirs.load_state_dict({k.replace("layers.", "layers_", 1): v for k, v in state.items()})
    ours = plugattn.create_model("swin_t", features_only=True).eval()
    ours.load_state_dict(state)  # strict: no norm, no head
    assert ours.feature_info.channels() == theirs.feature_info.channels() == [96, 192, 384, 768]
    assert ours.feature_info.reduction() == theirs.feature_info.reduction() == [4, 8, 16, 32]
    assert ours.feature_info.module_name() == theirs.feature_info.module_name()
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        mine, timms = ours(x), theirs(x)
        intermediates = full.forward_intermediates(x, intermediates_only=True)  # timm's NCHW
    for a, b, c in zip(mine, timms, intermediates, strict=True):
        assert a.is_contiguous() and a.shape == c.shape
        torch.testing.assert_close(a, b.permute(0, 3, 1, 2), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("attention", ["scsa", "ham"])
def test_timm_weights_load_into_a_model_with_attention(attention):
    """Only the attention's keys are missing; with the hooks made identities the logits are timm's."""
    theirs = perturbed(timm.create_model(TIMM_NAMES["swin_t"], pretrained=False, num_classes=10), 1)
    ours = plugattn.create_model("swin_t", attention=attention, num_classes=10).eval()
    result = ours.load_state_dict(theirs.state_dict(), strict=False)
    assert not result.unexpected_keys
    assert result.missing_keys and all(
        ".attn." in k and k.split(".")[2] == "attn" for k in result.missing_keys
    )
    for stage in ours.layers:
        stage.attn = nn.Identity()
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


def test_our_class_takes_timms_arguments_for_its_layout():
    """The same keyword names for the layout (``embed_dim``, ``depths``, ``num_heads``, ``window_size``,
    ``img_size``, ``patch_size``, ``mlp_ratio``, ``drop_path_rate``, ``drop_rate``) build the same shapes."""
    kwargs = {"img_size": 64, "window_size": 4, "patch_size": 2, "mlp_ratio": 2.0, "embed_dim": 16,
              "depths": (1, 3, 2), "num_heads": (2, 2, 4), "num_classes": 3, "in_chans": 1}  # fmt: skip
    ours, theirs = SwinTransformer(**kwargs), timm.models.swin_transformer.SwinTransformer(**kwargs)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()
    }
