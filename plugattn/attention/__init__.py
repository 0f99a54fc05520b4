"""Attention modules, one file each, and the registry they enrol in by being imported here."""

from plugattn.attention.ham import HAM
from plugattn.attention.maps import capture_attention_maps, gate_modules
from plugattn.attention.registry import (
    AttentionEntry,
    attention_entry,
    create_attention,
    list_attention,
    register_attention,
)
from plugattn.attention.scsa import SCSA

# baselines-a imports

# baselines-b imports

__all__ = [
    "HAM",
    "SCSA",
    # baselines-a exports
    # baselines-b exports
    "AttentionEntry",
    "attention_entry",
    "capture_attention_maps",
    "create_attention",
    "gate_modules",
    "list_attention",
    "register_attention",
]
