"""plugattn: faithful, fast, tested plug-and-play attention modules for convolutional networks."""

from plugattn.attention import *  # noqa: F403  (the attention room's public names)
from plugattn.attention import __all__ as _attention_all

__version__ = "0.1.0"

__all__ = ["__version__", *_attention_all]

# models room
from plugattn.models import create_model, insert_attention, list_models, mmcv_plugin  # noqa: E402

__all__ += ["create_model", "insert_attention", "list_models", "mmcv_plugin"]
