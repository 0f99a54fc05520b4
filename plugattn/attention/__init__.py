"""Attention modules, one file each, and the registry they enrol in by being imported here."""

from plugattn.attention.ca import CoordAtt
from plugattn.attention.cbam import CBAM
from plugattn.attention.eca import ECA
from plugattn.attention.ema import EMA
from plugattn.attention.gc import GlobalContext
from plugattn.attention.ham import HAM
from plugattn.attention.ham_fast import native_kernels
from plugattn.attention.maps import attention_maps, attention_modules, capture_attention_maps, gate_modules
from plugattn.attention.rcca import CrissCross
from plugattn.attention.registry import (
    AttentionEntry,
    attention_entry,
    create_attention,
    list_attention,
    register_attention,
)
from plugattn.attention.sa import ShuffleAttention
from plugattn.attention.scsa import SCSA
from plugattn.attention.se import SE
from plugattn.attention.simam import SimAM
from plugattn.attention.triplet import TripletAttention


def kernel_status() -> dict[str, str]:
    """How HAM's and SCSA's passes over the map and SCSA's channel attention (``"pcsa"``) run in this
    process: ``"native (…)"`` (fused C kernels, built on first use) or why they run in pure torch; saved
    in a run's ``env.json``."""
    from plugattn.attention import ham_fast, pcsa_fast, scsa_fast

    return {"ham": ham_fast.status(), "scsa": scsa_fast.status(), "pcsa": pcsa_fast.status()}


__all__ = [
    "kernel_status",
    "native_kernels",
    "HAM",
    "SCSA",
    "CBAM",
    "ECA",
    "SE",
    "CoordAtt",
    "SimAM",
    "EMA",
    "CrissCross",
    "GlobalContext",
    "ShuffleAttention",
    "TripletAttention",
    "AttentionEntry",
    "attention_entry",
    "attention_maps",
    "attention_modules",
    "capture_attention_maps",
    "create_attention",
    "gate_modules",
    "list_attention",
    "register_attention",
]
