"""Checkpoints that are never half-written, and the random state that makes resume exact."""

from __future__ import annotations

import pickle
import random
import warnings
from pathlib import Path
from typing import Any

import torch

from plugattn._files import atomic_write, remove_stale_temps

__all__ = ["atomic_save", "capture_rng", "load_checkpoint", "remove_stale_temps", "restore_rng"]


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` that a reader (or a run killed at any moment) sees whole or not at all: the old
    file or the new one, never a partial one (see :func:`plugattn._files.atomic_write`)."""
    return atomic_write(path, lambda f: torch.save(obj, f))


_UNTRUSTED = (
    "plugattn reads checkpoints as weights only (no code runs from the file); do not load a file you "
    "do not trust with torch.load(weights_only=False)"
)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a plugattn checkpoint with ``weights_only=True`` (no code runs from the file).

    Anything else (a missing path, a device or folder, an empty, truncated or foreign file) is refused
    with one line that says what the file is and what to do, never torch's advice to retry with
    ``weights_only=False``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} is not a regular file (a plugattn run keeps last.pt)")
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise ValueError(f"checkpoint {str(path)!r} is empty (0 bytes), not a plugattn checkpoint")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of foreign files
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a corrupt or foreign file
        if head != b"PK\x03\x04":
            what = "not a file written by torch.save"
        elif isinstance(err, pickle.UnpicklingError):
            what = "it holds objects other than tensors and plain data"
        else:
            what = "a truncated or damaged torch.save file"
        raise ValueError(
            f"checkpoint {str(path)!r} cannot be read ({what}: {_reason(err)}); {_UNTRUSTED}"
        ) from err
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise ValueError(
            f"checkpoint {str(path)!r} is not a plugattn checkpoint (a torch file without 'model' and "
            f"'config'; for bare weights use model.load_state_dict)"
        )
    return ckpt


def _reason(err: Exception) -> str:
    """The informative line of torch's error (its weights-only text puts it after its advice)."""
    text = str(err)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    line = next((ln for ln in lines if "weights_only" not in ln), lines[0] if lines else "")
    line = line.split(". ")[0][:160]
    return f"{type(err).__name__}: {line}" if line else type(err).__name__


def capture_rng() -> dict[str, Any]:
    """Every random state a training step may draw from (torch CPU and CUDA, Python's)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    state["python_version"] = random.getstate()[0]
    state["python_gauss"] = random.getstate()[2]
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
