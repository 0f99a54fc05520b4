"""Pinned parameter counts: torchvision's and the papers' published numbers.

Models are built on the meta device (same parameters, no memory, no init cost).
"""

from __future__ import annotations

import math

import pytest

import plugattn
from tests.models.helpers import count


def meta_count(name: str, **kwargs) -> int:
    return count(plugattn.create_model(name, device="meta", **kwargs))


PINNED = {
    # He et al. 2016 CIFAR ResNets, option A, 10 classes (the reference CIFAR implementations' counts).
    "resnet20": 269_722,
    "resnet32": 464_154,
    "resnet44": 658_586,
    "resnet56": 853_018,
    "resnet110": 1_727_962,
    # torchvision, 1000 classes.
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnext50_32x4d": 25_028_904,
    "mobilenet_v2": 3_504_872,
    # Wide ResNets, 10 classes (papers: WRN-16-8 11.0M, WRN-28-10 36.5M).
    "wrn16_8": 10_961_370,
    "wrn28_10": 36_479_194,
    # ResNeXt-29 8x64d, 10 classes (paper Table 7: 34.4M).
    "resnext29_8x64d": 34_426_698,
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_pinned_count(name):
    assert meta_count(name) == PINNED[name]


@pytest.mark.parametrize(
    "name,attention,expected",
    [
        ("resnet50", "scsa", 25_617_448),  # + 16 C per block at the bottleneck width (60,416)
        ("mobilenet_v2", "scsa", 3_619_048),  # + 16 C per block at the depthwise width (114,176)
        ("resnet20", "ham", 270_685),  # + 107 per block (k=3, alpha, beta, 2*49, two BN(1))
    ],
)
def test_pinned_count_with_attention(name, attention, expected):
    assert meta_count(name, attention=attention) == expected


def test_wide_resnet18_2_doubles_the_stages():
    # Each BasicBlock conv has 4x the weights of ResNet-18's; stem stays 64 channels wide.
    assert meta_count("wide_resnet18_2") == 45_618_216


def test_scsa_at_the_reference_wiring_in_resnet50():
    """SCSA after conv2/bn2/ReLU: widths 64x3, 128x4, 256x6, 512x3 = 3,776 channels, 16 parameters each."""
    assert meta_count("resnet50", attention="scsa") - PINNED["resnet50"] == 16 * (
        64 * 3 + 128 * 4 + 256 * 6 + 512 * 3
    )


# HAM paper Table 4 sizes in millions, truncated to two decimals (attention in every block, option A).
TABLE4 = {
    ("resnet20", None): 0.26,
    ("resnet20", "se"): 0.27,
    ("resnet20", "eca"): 0.26,
    ("resnet20", "cbam"): 0.27,
    ("resnet56", None): 0.85,
    ("resnet56", "se"): 0.86,
    ("resnet56", "eca"): 0.85,
    ("resnet56", "cbam"): 0.86,
    ("resnet110", None): 1.72,
    ("resnet110", "se"): 1.74,
    ("resnet110", "eca"): 1.72,
    ("resnet110", "cbam"): 1.74,
}


@pytest.mark.parametrize("name,attention", sorted(TABLE4, key=str))
def test_ham_paper_table4_sizes(name, attention):
    n = meta_count(name, attention=attention)
    assert math.floor(n / 10_000) / 100 == TABLE4[(name, attention)], n


@pytest.mark.parametrize("attention", plugattn.list_attention())
def test_attention_adds_its_own_parameters_per_block(attention):
    """resnet20 + attention = resnet20 + the module's count at each block's width (and nothing else)."""
    model = plugattn.create_model("resnet20", attention=attention, device="meta")
    per_block = sum(count(b.attn) for b in model.modules() if hasattr(b, "attn_position"))
    widths = [16] * 3 + [32] * 3 + [64] * 3
    if plugattn.attention_entry(attention).position == "end":
        assert per_block == sum(count(plugattn.create_attention(attention, c, device="meta")) for c in widths)
    assert count(model) == PINNED["resnet20"] + per_block
