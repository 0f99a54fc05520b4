"""The interop tests import the real timm, torchvision and mmcv, which the core environment lacks.

`bash run.sh test` builds a second environment for them (``.venv-interop``: torch and torchvision builds
that work together, timm, mmcv-lite and mmengine, pinned in ``requirements-interop.txt``) and runs this
folder there with ``PLUGATTN_INTEROP=1``. With that variable set, a missing library is a failure; without
it, each module here is skipped with the reason below.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

REASON = (
    "the real timm/torchvision/mmcv tests run in the interop environment that `bash run.sh test` builds "
    "(.venv-interop, requirements-interop.txt); set PLUGATTN_INTEROP=1 to run them in an environment that "
    "has those libraries"
)


def require(name: str) -> ModuleType:
    """``import name``: skips the calling test module outside the interop environment, fails inside it."""
    if os.environ.get("PLUGATTN_INTEROP") != "1":
        pytest.skip(REASON, allow_module_level=True)
    return importlib.import_module(name)
