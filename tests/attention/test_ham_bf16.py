"""HAM under CPU autocast, where the backbone's convolutions hand it a bfloat16 map: its native passes read
and write the bf16 map as it is (``ham_map.h``, the ``_bf16`` kernels) and compute in float32, which must
give bit for bit what the float32 kernels give on the map cast up, the results rounded once (the path
before them: two casts over the map each way). Training and inference, both layouts."""

from __future__ import annotations

import pytest
import torch

import plugattn
from plugattn.attention import ham_fast
from tests.attention.test_matrix import randomize

pytestmark = pytest.mark.skipif(
    not ham_fast.available(), reason=f"HAM's kernels are not built here: {ham_fast.status()}"
)

LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
# Odd sizes, one position, fewer and more channels than a vector's lanes, and more positions than a
# tile of the contiguous descriptors (512): 24 × 25 = 600.
SHAPES = [(3, 16, 9, 9), (2, 37, 5, 7), (3, 20, 1, 1), (2, 8, 24, 25), (2, 64, 3, 3)]


@pytest.fixture
def kernel_dtypes(monkeypatch):
    """The element types of the map passes called (the names of the kernels looked up)."""
    called = []
    real = ham_fast._kernel

    def spy(name, layout, dtype=torch.float32):
        called.append(dtype)
        return real(name, layout, dtype)

    monkeypatch.setattr(ham_fast, "_kernel", spy)
    return called


def _float32_reference(module, x, probe, grads_wanted):
    """The float32 kernels on the map cast up (no autocast), output and gradients rounded as autocast's
    casts would round them."""
    module.zero_grad(set_to_none=True)
    x32 = x.detach().float().requires_grad_(grads_wanted["x"])
    out = module(x32)
    out.backward(probe.float())
    grad_x = None if x32.grad is None else x32.grad.bfloat16()
    return out.bfloat16(), grad_x, [None if p.grad is None else p.grad.clone() for p in module.parameters()]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("wanted", ["x and parameters", "x only", "parameters only"])
def test_training_on_a_bf16_map_equals_float32_kernels_on_the_map_cast_up(
    shape, layout, wanted, kernel_dtypes
):
    torch.manual_seed(0)
    m = randomize(plugattn.HAM(shape[1]))
    grads_wanted = {"x": wanted != "parameters only", "parameters": wanted != "x only"}
    m.requires_grad_(grads_wanted["parameters"])
    x = torch.randn(shape).bfloat16().contiguous(memory_format=LAYOUTS[layout])
    probe = torch.randn(shape).bfloat16().contiguous(memory_format=LAYOUTS[layout])
    state = {k: v.clone() for k, v in m.state_dict().items()}

    x_in = x.clone().requires_grad_(grads_wanted["x"])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(x_in)
    out.backward(probe)
    assert kernel_dtypes and set(kernel_dtypes) == {torch.bfloat16}  # no float32 copy of the map
    assert out.dtype == torch.bfloat16 and out.is_contiguous(memory_format=LAYOUTS[layout])
    grads = [None if p.grad is None else p.grad.clone() for p in m.parameters()]
    after = {k: v.clone() for k, v in m.state_dict().items()}

    m.load_state_dict(state)  # the BatchNorms' running statistics as before the first call
    kernel_dtypes.clear()
    ref_out, ref_grad_x, ref_grads = _float32_reference(m, x, probe, grads_wanted)
    assert set(kernel_dtypes) == {torch.float32}
    assert torch.equal(out, ref_out)
    if grads_wanted["x"]:
        assert x_in.grad.dtype == torch.bfloat16 and torch.equal(x_in.grad, ref_grad_x)
    for got, expected in zip(grads, ref_grads, strict=True):
        assert (got is None) == (expected is None) == (not grads_wanted["parameters"])
        if got is not None:
            assert got.dtype == torch.float32 and torch.equal(got, expected)
    assert not torch.equal(
        after["spatial.norm_important.running_mean"], state["spatial.norm_important.running_mean"]
    )
    for name, buffer in m.state_dict().items():  # the BatchNorms' running statistics moved identically
        assert torch.equal(buffer, after[name]), name


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_inference_on_a_bf16_map_runs_the_one_pass_kernel_in_bf16(shape, layout, kernel_dtypes):
    torch.manual_seed(0)
    m = randomize(plugattn.HAM(shape[1])).eval()
    x = torch.randn(shape).bfloat16().contiguous(memory_format=LAYOUTS[layout])
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        assert m._fuses(x)
        out = m(x)
    assert kernel_dtypes == [torch.bfloat16]  # ham_eval_bf16 alone: nothing handed back
    with torch.no_grad():
        expected = m(x.float()).bfloat16()
    assert out.dtype == torch.bfloat16 and torch.equal(out, expected)


def test_a_sample_handed_back_by_the_bf16_kernel_takes_the_bf16_steps():
    """A sample with a NaN is left by ham_eval_bf16 and computed by the passes, in bf16 too."""
    torch.manual_seed(0)
    m = randomize(plugattn.HAM(16)).eval()
    x = torch.randn(3, 16, 6, 6).bfloat16()
    x[1, 4, 2, 2] = float("nan")
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        out = m(x)
    with torch.no_grad():
        expected = m(x.float()).bfloat16()
    assert torch.equal(out[[0, 2]], expected[[0, 2]])
    assert torch.isnan(out[1]).any() and torch.isnan(expected[1]).any()
    torch.testing.assert_close(out[1], expected[1], equal_nan=True, rtol=0, atol=0)


def test_under_autocast_a_float16_map_is_cast_up_and_a_bf16_module_stays_pure_torch(kernel_dtypes):
    torch.manual_seed(0)
    m = randomize(plugattn.HAM(16))
    x = torch.randn(2, 16, 5, 5).half()
    with torch.autocast("cpu", dtype=torch.float16):
        assert ham_fast.usable_in_float32(x, *m.parameters())
        out = m(x)
    assert out.dtype == torch.float16 and set(kernel_dtypes) == {torch.float32}
    assert torch.equal(out, m(x.float()).half())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not ham_fast.usable_in_float32(x.bfloat16(), *m.bfloat16().parameters())
