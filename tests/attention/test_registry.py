"""The registry and create_attention: names, classes, factories, None, and their errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import plugattn
from plugattn.attention import registry


def test_headline_modules_are_registered_and_exported():
    names = plugattn.list_attention()
    assert names == sorted(names)
    assert {"ham", "scsa"} <= set(names)
    assert plugattn.attention_entry("ham").cls is plugattn.HAM
    assert plugattn.attention_entry("scsa").cls is plugattn.SCSA
    assert plugattn.attention_entry("scsa").position == "before_last_conv"
    assert plugattn.attention_entry("ham").position == "end"


@pytest.mark.parametrize("spec", [None, "none", "None", "NONE"])
def test_none_gives_identity(spec):
    m = plugattn.create_attention(spec, 16)
    assert isinstance(m, nn.Identity)


def test_kwargs_reach_the_module():
    m = plugattn.create_attention("ham", 32, separation_rate=0.5)
    assert m.important_channels == 16


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"attention must be one of .*ham.*scsa.*; got 'hma'"):
        plugattn.create_attention("hma", 16)


def test_instance_is_rejected():
    with pytest.raises(ValueError, match=r"not a module instance \(HAM\)"):
        plugattn.create_attention(plugattn.HAM(16), 16)


def test_factory_must_return_a_module():
    with pytest.raises(ValueError, match=r"returned int, not an nn.Module"):
        plugattn.create_attention(lambda c: c, 16)


def test_other_types_are_rejected():
    with pytest.raises(ValueError, match=r"attention must be a registered name.*got 3"):
        plugattn.create_attention(3, 16)


@pytest.mark.parametrize("channels", [0, -4, 2.5, True, "16"])
def test_bad_channels(channels):
    with pytest.raises(ValueError, match=r"channels must be"):
        plugattn.create_attention("ham", channels)


def test_duplicate_registration_raises():
    with pytest.raises(ValueError, match=r"'ham' is already registered \(by HAM\)"):

        @plugattn.register_attention("ham", paper="x")
        class Other(nn.Module):
            pass


@pytest.mark.parametrize("name", ["", "Ham2", "none", 3])
def test_bad_registration_names(name):
    with pytest.raises(ValueError, match=r"name must be a non-empty lower-case string"):
        plugattn.register_attention(name, paper="x")


def test_bad_registration_position():
    with pytest.raises(ValueError, match=r"position must be one of 'end', 'before_last_conv'"):
        plugattn.register_attention("fresh", paper="x", position="middle")


def test_registration_enrols_a_new_module():
    @plugattn.register_attention("unit_test_identity", paper="none")
    class Ident(nn.Module):
        def __init__(self, channels: int) -> None:
            super().__init__()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    try:
        assert "unit_test_identity" in plugattn.list_attention()
        assert isinstance(plugattn.create_attention("unit_test_identity", 8), Ident)
    finally:
        del registry._REGISTRY["unit_test_identity"]
