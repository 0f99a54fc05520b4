"""Where the attention sits: what tensor it sees at every position of every block, and defaults."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import plugattn
from plugattn.models import BasicBlock, Bottleneck, InvertedResidual, PreActBasicBlock, ResidualBlock
from plugattn.models.placement import default_position


class Probe(nn.Module):
    """Records the tensor it is given; returns it times ``scale``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.scale = 1.0
        self.seen: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = x.detach().clone()
        return x * self.scale


BLOCKS = {
    "basic": lambda pos: BasicBlock(16, 16, attention=Probe, position=pos),
    "bottleneck": lambda pos: Bottleneck(64, 16, attention=Probe, position=pos),  # width 16, out 64
    "preact": lambda pos: PreActBasicBlock(16, 16, attention=Probe, position=pos),
    "inverted": lambda pos: InvertedResidual(16, 16, 1, 6, attention=Probe, position=pos),  # hidden 96
    "inverted_t1": lambda pos: InvertedResidual(16, 16, 1, 1, attention=Probe, position=pos),  # no expansion
}

# block, position, the layer whose output the attention must see, its channels
CASES = [
    ("basic", "end", "bn2", 16),
    ("basic", "after_conv2", "bn2", 16),
    ("basic", "after_conv1", "act1", 16),
    ("basic", "before_last_conv", "act1", 16),
    ("bottleneck", "end", "bn3", 64),
    ("bottleneck", "after_conv3", "bn3", 64),
    ("bottleneck", "after_conv2", "act2", 16),
    ("bottleneck", "before_last_conv", "act2", 16),
    ("bottleneck", "after_conv1", "act1", 16),
    ("preact", "end", "conv2", 16),
    ("preact", "after_conv2", "conv2", 16),
    ("preact", "after_conv1", "act2", 16),
    ("preact", "before_last_conv", "act2", 16),
    ("inverted", "end", "bn3", 16),
    ("inverted", "after_conv3", "bn3", 16),
    ("inverted", "before_last_conv", "act2", 96),
    ("inverted", "after_conv2", "act2", 96),
    ("inverted", "after_conv1", "act1", 96),
    ("inverted_t1", "end", "bn3", 16),
    ("inverted_t1", "before_last_conv", "act2", 16),
    ("inverted_t1", "after_conv1", "act2", 16),
]


@pytest.mark.parametrize("block,position,layer,channels", CASES)
def test_attention_sees_the_named_layer_output(block, position, layer, channels):
    torch.manual_seed(0)
    m = BLOCKS[block](position).eval()
    assert isinstance(m.attn, Probe) and m.attn.channels == channels
    assert m.attn_position == position
    seen = {}
    m.get_submodule(layer).register_forward_hook(
        lambda _m, _i, out: seen.setdefault("out", out.detach().clone())
    )
    in_chs = 64 if block == "bottleneck" else 16
    m(torch.randn(2, in_chs, 8, 8))
    torch.testing.assert_close(m.attn.seen, seen["out"])


@pytest.mark.parametrize("block", ["basic", "bottleneck", "preact", "inverted"])
def test_end_attention_output_is_what_gets_added(block):
    """A probe that zeroes its input at "end" leaves only the shortcut: the hook is on the live path."""
    m = BLOCKS[block]("end").eval()
    m.attn.scale = 0.0
    in_chs = 64 if block == "bottleneck" else 16
    x = torch.randn(2, in_chs, 8, 8)
    expected = x if block in ("preact", "inverted") else torch.relu(x)
    torch.testing.assert_close(m(x), expected)


def test_mobilenet_end_without_residual_is_after_the_projection_bn():
    m = InvertedResidual(16, 24, 2, 6, attention=Probe, position="end").eval()
    assert not m.use_res_connect and m.attn.channels == 24
    m.attn.scale = 0.0
    assert torch.count_nonzero(m(torch.randn(1, 16, 8, 8))) == 0


def _order(block: nn.Module, x: torch.Tensor) -> list[str]:
    """The names of the block's direct children in the order they run on ``x``."""
    seen: list[str] = []
    hooks = [m.register_forward_hook(lambda *_, n=n: seen.append(n)) for n, m in block.named_children()]
    block(x)
    for h in hooks:
        h.remove()
    return seen


def test_branch_order_is_fixed_at_construction():
    x = torch.randn(1, 64, 8, 8)
    m = Bottleneck(64, 16, attention="scsa")
    branch = ["conv1", "bn1", "act1", "conv2", "bn2", "act2", "conv3", "bn3"]
    assert _order(m, x) == [*branch[:6], "attn", *branch[6:], "downsample", "act3"]
    plain = Bottleneck(64, 16)
    assert isinstance(plain.attn, nn.Identity)
    assert _order(plain, x) == [*branch, "attn", "downsample", "act3"]


@pytest.mark.parametrize("name", plugattn.list_attention())
def test_default_position_is_the_registry_entry(name):
    entry = plugattn.attention_entry(name)
    assert default_position(name) == default_position(entry.cls) == entry.position


def test_default_position_of_other_things_is_end():
    assert (
        default_position(Probe)
        == default_position(lambda c: nn.Identity())
        == default_position(None)
        == "end"
    )


@pytest.mark.parametrize(
    "name,block,channels",
    [("resnet18", "layer2.0", 128), ("resnet50", "layer2.0", 128), ("mobilenet_v2", "stages.1.0", 96)],
)
def test_scsa_default_place_in_each_model(name, block, channels):
    """SCSA: BasicBlock after conv1, Bottleneck after conv2 (narrow width), MobileNetV2 after depthwise."""
    m = plugattn.create_model(name, attention="scsa", device="meta")
    b = m.get_submodule(block)
    assert b.attn_position == "before_last_conv" and b.attn.channels == channels


def test_position_overrides_every_module():
    m = plugattn.create_model("resnet50", attention="scsa", position="end", device="meta")
    assert {b.attn_position for b in m.modules() if isinstance(b, ResidualBlock)} == {"end"}
    assert m.layer1[0].attn.channels == 256


def test_stages_pick_the_blocks_with_attention():
    m = plugattn.create_model("resnet20", attention="ham", stages=(1,))
    for i, stage in enumerate((m.layer1, m.layer2, m.layer3)):
        assert all(b.has_attention == (i == 1) for b in stage)
    mb = plugattn.create_model("mobilenet_v2", attention="ham", stages=(0, 4), device="meta")
    flags = [[b.has_attention for b in stage] for stage in mb.stages]
    assert flags == [[True], [False] * 2, [False] * 3, [False] * 7, [True] * 4]


def test_attention_keywords_reach_every_block():
    m = plugattn.create_model(
        "resnet20", attention="ham", attn_kwargs={"separation_rate": 0.5}, device="meta"
    )
    assert {b.attn.separation_rate for b in m.modules() if isinstance(b, ResidualBlock)} == {0.5}
