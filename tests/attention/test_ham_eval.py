"""HAM's one-pass inference kernel (``ham_eval`` in ham_kernels.c, ``HAM._forward_fused``): the same
function as the pure-torch path and the spec's independent formulation, and the cases it hands back."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import plugattn
from plugattn.attention import ham_fast
from tests.attention.test_ham import ham_reference
from tests.attention.test_matrix import randomize

pytestmark = pytest.mark.skipif(
    not ham_fast.available(), reason=f"HAM's kernels are not built here: {ham_fast.status()}"
)

LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
# Narrow (<= 16 columns) and wide maps, odd sizes, 1×1, few and many channels, kernels 3, 5, 7.
CASES = [
    ((4, 16, 8, 8), 7),
    ((3, 64, 7, 9), 7),
    ((2, 5, 13, 11), 3),
    ((2, 33, 17, 3), 5),
    ((3, 20, 1, 1), 7),
    ((2, 24, 40, 37), 7),
    ((2, 256, 14, 14), 7),
    ((1, 2048, 2, 3), 3),
]


def pure(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with ham_fast.native_kernels(False), torch.no_grad():
        return module(x)


def fused(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    assert module._fuses(x), "the call was expected to take the one-pass kernel"
    with torch.no_grad():
        return module(x)


@pytest.mark.parametrize("adaptive", [True, False], ids=["adaptive", "plain"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(("shape", "k"), CASES, ids=str)
def test_the_one_pass_kernel_equals_the_pure_torch_path(shape, k, layout, adaptive):
    torch.manual_seed(0)
    m = randomize(plugattn.HAM(shape[1], spatial_kernel_size=k, adaptive=adaptive)).eval()
    x = torch.randn(shape).contiguous(memory_format=LAYOUTS[layout])
    y = fused(m, x)
    torch.testing.assert_close(y, pure(m, x), rtol=1e-5, atol=1e-6)
    assert y.is_contiguous(memory_format=LAYOUTS[layout])


def test_the_one_pass_kernel_matches_the_independent_formulation():
    """The float64 formulation of spec/ham.md, fed the float32 input (eval mode: running statistics)."""
    torch.manual_seed(0)
    m = randomize(plugattn.HAM(32)).eval()
    ref = randomize(plugattn.HAM(32)).double().eval()
    ref.load_state_dict(m.state_dict())
    x = torch.randn(3, 32, 9, 10)
    y_ref = ham_reference(ref, x.double(), False)[0]
    torch.testing.assert_close(fused(m, x).double(), y_ref, rtol=1e-5, atol=1e-6)


def test_norms_without_affine_and_a_hand_computed_norm():
    """BatchNorm(affine=False): scale 1/sqrt(var + eps), shift -mean/sqrt(var + eps)."""
    torch.manual_seed(0)
    m = randomize(plugattn.HAM(16)).eval()
    for name in ("norm_important", "norm_subimportant"):
        norm = nn.BatchNorm2d(1, affine=False, eps=1e-3).eval()
        norm.running_mean.fill_(0.25)
        norm.running_var.fill_(4.0)
        setattr(m.spatial, name, norm)
    x = torch.randn(2, 16, 6, 6)
    torch.testing.assert_close(fused(m, x), pure(m, x), rtol=1e-5, atol=1e-6)


def tie_at_the_border(channels: int = 16) -> torch.Tensor:
    """Every channel the same map: away from the ends of the channel conv's zero padding all a_c are
    equal, so the important group's border falls inside a tie, which torch.topk breaks its own way."""
    return torch.randn(1, 1, 5, 5).expand(1, channels, 5, 5).contiguous()


def test_a_tie_at_the_border_is_handed_back_and_computed_step_by_step():
    torch.manual_seed(0)
    m = randomize(plugattn.HAM(16)).eval()
    x = torch.cat([tie_at_the_border(), torch.randn(2, 16, 5, 5)])
    norm = torch.tensor([1.0, 0.0, 1.0, 0.0])
    mix = (m.channel.alpha.item(), m.channel.beta.item())
    _, flags = ham_fast.evaluate(x, m.channel.conv.weight, mix, 10, m.spatial.conv.weight, norm)
    assert flags.tolist() == [1, 0, 0]
    # The whole module: the tied sample takes topk's choice, exactly as the pure path does.
    torch.testing.assert_close(fused(m, x), pure(m, x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")], ids=str)
def test_a_sample_with_a_value_that_is_not_finite_is_handed_back(bad):
    torch.manual_seed(0)
    m = randomize(plugattn.HAM(16)).eval()
    x = torch.randn(3, 16, 6, 6)
    x[1, 4, 2, 3] = bad
    norm = torch.tensor([1.0, 0.0, 1.0, 0.0])
    _, flags = ham_fast.evaluate(x, m.channel.conv.weight, (0.5, 0.5), 10, m.spatial.conv.weight, norm)
    assert flags.tolist() == [0, 1, 0]
    torch.testing.assert_close(fused(m, x), pure(m, x), rtol=1e-5, atol=1e-6, equal_nan=True)


def test_hooks_training_norms_and_replaced_layers_keep_the_step_by_step_path():
    torch.manual_seed(0)
    m = randomize(plugattn.HAM(16)).eval()
    x = torch.randn(2, 16, 6, 6)
    assert m._fuses(x)
    with plugattn.capture_attention_maps(m) as maps:  # forward hooks on the gates
        assert not m._fuses(x)
        with torch.no_grad():
            y = m(x)
    assert maps["spatial.gate"][0].shape == (2, 2, 6, 6)
    torch.testing.assert_close(y, pure(m, x))
    handle = nn.modules.module.register_module_forward_hook(lambda *args: None)
    try:
        assert not m._fuses(x)  # a global hook sees every layer's call
    finally:
        handle.remove()
    m.spatial.norm_subimportant.train()
    assert not m._fuses(x)  # batch statistics: not an affine map of one sample
    m.spatial.norm_subimportant.eval()
    m.spatial.norm_important = nn.BatchNorm2d(1, track_running_stats=False)
    assert not m._fuses(x)
    m.spatial.norm_important = randomize(nn.BatchNorm2d(1)).eval()
    m.spatial.gate = nn.Hardsigmoid()
    assert not m._fuses(x)
    torch.testing.assert_close(m(x), pure(m, x))
