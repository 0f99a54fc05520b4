"""What produced a result: versions, hardware, numerics, threads, git revision, command line
(``env.json`` of a run directory)."""

from __future__ import annotations

import dataclasses
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import plugattn
from plugattn.attention import kernel_status
from plugattn.engine.distributed import DistInfo
from plugattn.engine.memory import allocator_state
from plugattn.engine.numerics import Numerics, native_bf16

__all__ = ["environment"]


def environment(device: torch.device, dist: DistInfo, numerics: Numerics) -> dict[str, Any]:
    """The conditions of a run, as saved in ``env.json``."""
    return {
        "plugattn": plugattn.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": native_bf16(device),
        "numerics": dataclasses.asdict(numerics),
        "kernels": kernel_status(),
        "memory": allocator_state(),
        "world_size": dist.world_size,
        "git_revision": _git_revision(),
        "command": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _git_revision() -> str | None:
    """The commit of the plugattn checkout that ran (``None`` for an installed wheel)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
