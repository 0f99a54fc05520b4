"""Attention modules as plugins of other libraries' backbones.

timm: every plugattn attention class is usable as is, e.g.
``timm.create_model("resnet50", block_args=dict(attn_layer=plugattn.HAM))`` — timm calls
``attn_layer(channels)`` (recent versions add ``device=``/``dtype=`` keywords, which every module takes)
after each block's last BN (the ``"end"`` position). For another position, build the timm model
plainly and call :func:`plugattn.insert_attention`.

mmcv / mmdet: their ResNet's ``plugins`` build each plugin as ``cls(in_channels=C, **cfg)`` at
``position='after_conv1' | 'after_conv2' | 'after_conv3'`` — the positions plugattn shares.
:func:`mmcv_plugin` turns an attention into such a class::

    from plugattn.models import mmcv_plugin

    SCSAPlugin = mmcv_plugin("scsa", register=True)   # registered in mmcv's plugin registry
    backbone = dict(
        type="ResNet", depth=50,
        plugins=[dict(cfg=dict(type="SCSAPlugin"), stages=(True, True, True, True),
                      position="after_conv2")],
    )

The plugin's keys are ``<abbr><postfix>.attn.*`` (``_abbr_`` is the registry name, e.g. ``scsa``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from plugattn._checks import check_int
from plugattn._registry import is_no_attention
from plugattn.attention.registry import AttentionSpec, attention_entry, create_attention

__all__ = ["AttentionPlugin", "mmcv_plugin", "register_mmcv_plugin"]

_CACHE: dict[tuple[Any, tuple[tuple[str, Any], ...]], type[AttentionPlugin]] = {}


class AttentionPlugin(nn.Module):
    """Base of the classes :func:`mmcv_plugin` makes: ``Plugin(in_channels, **options)`` → ``attn``.

    Subclasses fix ``attention`` and ``defaults``; keyword options given at construction (from the
    plugin's config) override the defaults.
    """

    attention: ClassVar[AttentionSpec] = None
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, in_channels: int, **kwargs: Any) -> None:
        super().__init__()
        check_int("in_channels", in_channels, minimum=1)
        self.in_channels = in_channels
        self.attn = create_attention(type(self).attention, in_channels, **{**type(self).defaults, **kwargs})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x)

    def __reduce__(self) -> tuple[Any, ...]:
        # The class is made at run time; pickle the recipe for it, then the module's state.
        return _rebuild_plugin, (type(self).attention, dict(type(self).defaults)), self.__dict__


def _rebuild_plugin(attention: AttentionSpec, defaults: dict[str, Any]) -> AttentionPlugin:
    cls = mmcv_plugin(attention, **defaults)
    return cls.__new__(cls)


def mmcv_plugin(
    attention: AttentionSpec, *, register: bool = False, **defaults: Any
) -> type[AttentionPlugin]:
    """A plugin class for mmcv/mmdet backbones: ``cls(in_channels=C, **cfg)`` builds ``attention``.

    Args:
        attention: a registered name or a module class (or a callable ``channels -> nn.Module``).
        register: also register the class in mmcv's plugin registry (needs mmcv) under its name,
            ``<Module>Plugin`` (e.g. ``HAMPlugin``), so configs can say ``type="HAMPlugin"``.
        **defaults: keyword options of the attention module, overridable from the config.

    The same arguments give the same class (cached), so building twice registers once.
    """
    if is_no_attention(attention):
        raise ValueError(f"mmcv_plugin needs an attention module, got {attention!r}")
    if isinstance(attention, str):
        cls_name, abbr = attention_entry(attention).cls.__name__, attention.lower()
    else:
        base = getattr(attention, "__name__", type(attention).__name__)
        cls_name, abbr = base, base.lower()
    try:
        key = (attention, tuple(sorted(defaults.items())))
        hash(key)
    except TypeError:
        key = None  # unhashable option values: no caching
    plugin = _CACHE.get(key) if key is not None else None
    if plugin is None:
        factory = not isinstance(attention, (str, type))
        namespace = {
            # A plain function stored on a class would become a method; keep it a function.
            "attention": staticmethod(attention) if factory else attention,
            "defaults": dict(defaults),
            "_abbr_": abbr,
            "__module__": __name__,
            "__doc__": f"{cls_name} as an mmcv/mmdet plugin: ``{cls_name}Plugin(in_channels, **options)``.",
        }
        plugin = type(f"{cls_name}Plugin", (AttentionPlugin,), namespace)
        if key is not None:
            _CACHE[key] = plugin
    if register:
        register_mmcv_plugin(plugin)
    return plugin


def register_mmcv_plugin(plugin: type[nn.Module]) -> None:
    """Register ``plugin`` in mmcv's plugin registry (mmcv 2.x: mmengine's ``MODELS``; 1.x:
    ``PLUGIN_LAYERS``) under its class name; registering the same class again is a no-op."""
    try:
        from mmengine.registry import MODELS as registry  # mmcv >= 2.0
    except ImportError:
        try:
            from mmcv.cnn import PLUGIN_LAYERS as registry  # mmcv 1.x
        except ImportError as err:
            raise ImportError("register=True needs mmcv (and mmengine for mmcv >= 2.0) installed") from err
    existing = registry.get(plugin.__name__)
    if existing is plugin:
        return
    registry.register_module(name=plugin.__name__, module=plugin, force=True)
