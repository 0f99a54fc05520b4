"""plugattn's attention modules as plugins of the real mmcv (mmcv-lite: the pure-Python build that
installs on a CPU; the full mmcv needs its CUDA/C++ ops compiled against the local torch)."""

from __future__ import annotations

import torch

import plugattn
from plugattn.models import mmcv_plugin
from tests.interop._env import require

cnn = require("mmcv.cnn")
registry = require("mmengine.registry")


def test_registered_plugins_build_through_mmcv():
    plugin = mmcv_plugin("ham", register=True)
    name, layer = cnn.build_plugin_layer({"type": "HAMPlugin"}, postfix=2, in_channels=64)
    assert name == "ham2" and isinstance(layer, plugin) and isinstance(layer.attn, plugattn.HAM)
    x = torch.randn(2, 64, 8, 8)
    assert layer(x).shape == x.shape


def test_config_options_reach_the_module_through_mmengine():
    mmcv_plugin("scsa", register=True)
    layer = registry.MODELS.build({"type": "SCSAPlugin", "in_channels": 64, "head_num": 2})
    assert isinstance(layer.attn, plugattn.SCSA) and layer.attn.head_num == 2
    mmcv_plugin("scsa", register=True)  # registering the same class again is a no-op, not an error
