"""The one registry class behind attention modules, models, datasets and presets."""

from __future__ import annotations

import pytest
from torch import nn

import plugattn
from plugattn._registry import Registry, is_no_attention
from plugattn.attention import registry as attention_registry
from plugattn.attention.registry import attention_name_of
from plugattn.data import registry as data_registry
from plugattn.engine.config import PRESETS
from plugattn.models import registry as model_registry


def test_registration_is_strict():
    reg: Registry[int] = Registry("widget", reserved=("none",))
    assert reg.register("a", 1) == 1
    with pytest.raises(ValueError, match=r"^widget 'a' is already registered \(first\)$"):
        reg.register("a", 2, owner="first")
    for bad in ("", "Upper", "none", 3):
        with pytest.raises(ValueError, match=r"widget name must be a non-empty lower-case string other than"):
            reg.register(bad, 1)
    assert reg["a"] == 1  # the first registration stands


def test_lookup_ignores_case_and_lists_the_names():
    reg: Registry[str] = Registry("widget", also="or 'none'")
    for name in ("beta", "alpha"):
        reg.register(name, name.upper())
    assert reg.lookup("ALPHA") == "ALPHA" and reg.lookup("beta") == "BETA"
    with pytest.raises(ValueError, match=r"^widget must be one of alpha, beta \(or 'none'\); got 'gamma'$"):
        reg.lookup("gamma")
    with pytest.raises(ValueError, match=r"got None$"):
        reg.lookup(None)
    assert reg.names() == ["alpha", "beta"] and len(reg) == 2 and set(reg) == {"alpha", "beta"}
    assert reg.find(lambda e: e == "BETA") == ("beta", "BETA") and reg.find(lambda e: False) is None
    del reg["beta"]
    assert reg.names() == ["alpha"]


def test_every_room_uses_it():
    for reg, kind in (
        (attention_registry._REGISTRY, "attention"),
        (model_registry._REGISTRY, "model"),
        (data_registry._REGISTRY, "dataset"),
        (PRESETS, "preset"),
    ):
        assert isinstance(reg, Registry) and reg.kind == kind and len(reg) > 0


@pytest.mark.parametrize(
    "call,match",
    [
        (
            lambda: plugattn.create_attention("HMA", 8),
            r"^attention must be one of .*ham.* \(or 'none'\); got 'HMA'",
        ),
        (lambda: plugattn.create_model("ResNet21"), r"^model must be one of .*resnet20.*; got 'ResNet21'"),
        (lambda: plugattn.data.create_dataset("MNIST", "train"), r"^dataset must be one of .*; got 'MNIST'"),
        (
            lambda: plugattn.engine.resolve_config("Nope"),
            r"^preset must be one of .*fmnist-cpu.*; got 'Nope'",
        ),
    ],
)
def test_one_message_for_an_unknown_name(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_names_in_any_case_and_lookup_by_class():
    assert type(plugattn.create_attention("HAM", 16)).__name__ == "HAM"
    assert (
        plugattn.engine.resolve_config("FMNIST-CPU").epochs
        == plugattn.engine.resolve_config("fmnist-cpu").epochs
    )
    assert plugattn.data.create_dataset("Synthetic", "train", num_samples=8).name == "synthetic"
    assert attention_name_of(plugattn.attention.HAM) == "ham" and attention_name_of(nn.Identity) is None


@pytest.mark.parametrize("value,expected", [(None, True), ("none", True), ("None", True), ("NONE", True),
                                            ("ham", False), ("", False), (0, False)])  # fmt: skip
def test_the_one_definition_of_no_attention(value, expected):
    assert is_no_attention(value) is expected
    if expected:
        assert isinstance(plugattn.create_attention(value, 8), nn.Identity)
