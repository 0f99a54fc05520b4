"""timm's attn_layer and mmcv/mmdet plugins."""

from __future__ import annotations

import copy
import inspect
import pickle

import pytest
import torch
from torch import nn

import plugattn
from plugattn.models import AttentionPlugin, mmcv_plugin

ATTENTION = plugattn.list_attention()


@pytest.mark.parametrize("name", ATTENTION)
def test_every_attention_class_is_a_timm_attn_layer(name):
    """timm calls ``attn_layer(channels)``, recent versions with ``device=`` and ``dtype=`` keywords."""
    cls = plugattn.attention_entry(name).cls
    c = 64
    plain = cls(c)
    with_factory = cls(c, device="cpu", dtype=torch.float64)
    assert {p.dtype for p in with_factory.parameters()} <= {torch.float64}
    assert {b.dtype for b in with_factory.buffers() if b.is_floating_point()} <= {torch.float64}
    on_meta = cls(c, device="meta")
    assert all(p.device.type == "meta" for p in on_meta.parameters())
    x = torch.randn(2, c, 8, 8)
    assert plain.eval()(x).shape == x.shape


# --- mmcv / mmdet ------------------------------------------------------------------------------------


def build_plugin_layer_like_mmcv(cfg: dict, postfix: str = "", **kwargs):
    """What mmcv's build_plugin_layer does with a class given as ``type``."""
    cfg = dict(cfg)
    layer_type = cfg.pop("type")
    assert inspect.isclass(layer_type)
    abbr = layer_type._abbr_ if hasattr(layer_type, "_abbr_") else layer_type.__name__.lower()
    return abbr + str(postfix), layer_type(**kwargs, **cfg)


def test_mmcv_plugin_is_built_like_mmcv_builds_plugins():
    plugin = mmcv_plugin("ham", separation_rate=0.5)
    assert inspect.isclass(plugin) and issubclass(plugin, AttentionPlugin) and plugin.__name__ == "HAMPlugin"
    name, layer = build_plugin_layer_like_mmcv({"type": plugin}, postfix=1, in_channels=64)
    assert name == "ham1"
    assert isinstance(layer.attn, plugattn.HAM) and layer.attn.important_channels == 32
    _, layer = build_plugin_layer_like_mmcv({"type": plugin, "separation_rate": 0.75}, in_channels=64)
    assert layer.attn.separation_rate == 0.75  # the config overrides the defaults
    x = torch.randn(2, 64, 8, 8)
    assert layer(x).shape == x.shape
    assert "attn.channel.conv.weight" in layer.state_dict()


def test_mmcv_plugin_classes_are_cached_and_pickle():
    assert mmcv_plugin("scsa") is mmcv_plugin("SCSA".lower())
    assert mmcv_plugin("ham", separation_rate=0.5) is not mmcv_plugin("ham")
    assert mmcv_plugin(plugattn.SCSA).__name__ == "SCSAPlugin"
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), mmcv_plugin("scsa")(in_channels=16)).eval()
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        ref = model(x)
        for clone in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
            torch.testing.assert_close(clone(x), ref)


def test_mmcv_plugin_errors():
    with pytest.raises(ValueError, match=r"mmcv_plugin needs an attention module, got None"):
        mmcv_plugin(None)
    with pytest.raises(ValueError, match=r"attention must be one of"):
        mmcv_plugin("hma")
    with pytest.raises(ValueError, match=r"in_channels must be >= 1, got 0"):
        mmcv_plugin("ham")(in_channels=0)
