"""SCSA under CPU autocast, where the backbone's convolutions hand it a bfloat16 map: its native passes and
its one-pass inference kernel read and write the bf16 map as it is (``scsa_map.h``, the ``_bf16`` kernels)
and compute in float32, which must give bit for bit what the float32 kernels give on the map cast up, the
results rounded once. Training and inference, both layouts."""

from __future__ import annotations

import pytest
import torch

import plugattn
from plugattn.attention import scsa_fast
from tests.attention.test_matrix import randomize

pytestmark = pytest.mark.skipif(
    not scsa_fast.available(), reason=f"SCSA's kernels are not built here: {scsa_fast.status()}"
)

LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
# (shape, window size): odd sizes, a window that does not divide the map, one position, wide rows.
CASES = [((3, 16, 7, 9), 7), ((2, 32, 5, 5), 2), ((2, 64, 1, 1), 7), ((1, 12, 3, 40), 3), ((2, 8, 28, 28), 7)]


@pytest.fixture
def map_dtypes(monkeypatch):
    """The element types of the maps the passes and the inference kernel were called with."""
    called = []
    real_kernel, real_evaluate = scsa_fast._kernel, scsa_fast.evaluate
    monkeypatch.setattr(scsa_fast, "_kernel", lambda name, x: called.append(x.dtype) or real_kernel(name, x))
    monkeypatch.setattr(scsa_fast, "evaluate", lambda x, *a: called.append(x.dtype) or real_evaluate(x, *a))
    return called


def _read_as(shape: tuple[int, ...], layout: str) -> torch.dtype:
    """The dtype the kernels read a bf16 map in: bf16 in channels-last (a 1×1 map is contiguous too) and
    for contiguous maps at least 16 columns wide; narrower contiguous maps are cast up (their short rows
    convert slower)."""
    channels_last = layout == "channels_last" and shape[2] * shape[3] > 1
    return torch.bfloat16 if channels_last or shape[-1] >= 16 else torch.float32


def _module(shape: tuple[int, ...], window: int) -> torch.nn.Module:
    c = shape[1]
    return randomize(plugattn.SCSA(c, head_num=max(1, min(4, c // 4)), window_size=window))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("wanted", ["x and parameters", "x only", "parameters only"])
def test_training_on_a_bf16_map_equals_the_float32_kernels_on_the_map_cast_up(
    case, layout, wanted, map_dtypes
):
    torch.manual_seed(0)
    shape, window = case
    m = _module(shape, window)
    x_wants, params_want = wanted != "parameters only", wanted != "x only"
    m.requires_grad_(params_want)
    x = torch.randn(shape).bfloat16().contiguous(memory_format=LAYOUTS[layout])
    probe = torch.randn(shape).bfloat16().contiguous(memory_format=LAYOUTS[layout])

    x_in = x.clone().requires_grad_(x_wants)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(x_in)
    out.backward(probe)
    assert map_dtypes and set(map_dtypes) == {_read_as(shape, layout)}
    assert out.dtype == torch.bfloat16 and out.is_contiguous(memory_format=LAYOUTS[layout])
    grads = [None if p.grad is None else p.grad.clone() for p in m.parameters()]

    m.zero_grad(set_to_none=True)
    map_dtypes.clear()
    x32 = x.float().requires_grad_(x_wants)
    expected = m(x32)
    expected.backward(probe.float())
    assert set(map_dtypes) == {torch.float32}
    assert torch.equal(out, expected.bfloat16())
    if x_wants:
        assert x_in.grad.dtype == torch.bfloat16 and torch.equal(x_in.grad, x32.grad.bfloat16())
    for got, p in zip(grads, m.parameters(), strict=True):
        assert (got is None) == (p.grad is None) == (not params_want)
        if got is not None:
            assert got.dtype == torch.float32 and torch.equal(got, p.grad)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_inference_on_a_bf16_map_runs_the_one_pass_kernel_in_bf16(case, layout, map_dtypes):
    torch.manual_seed(0)
    shape, window = case
    m = _module(shape, window).eval()
    x = torch.randn(shape).bfloat16().contiguous(memory_format=LAYOUTS[layout])
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        out = m(x)
    assert map_dtypes == [_read_as(shape, layout)]  # the one-pass kernel alone: nothing handed back
    with torch.no_grad():
        expected = m(x.float()).bfloat16()
    assert out.dtype == torch.bfloat16 and out.is_contiguous(memory_format=LAYOUTS[layout])
    assert torch.equal(out, expected)


def test_a_sample_handed_back_by_the_bf16_kernel_takes_the_bf16_steps(map_dtypes):
    """A sample with an infinity is left by scsa_eval_bf16 and computed by the passes, in bf16 too."""
    torch.manual_seed(0)
    m = randomize(plugattn.SCSA(16)).eval()
    x = torch.randn(3, 16, 6, 6).bfloat16().contiguous(memory_format=torch.channels_last)
    x[1, 4, 2, 2] = float("inf")
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        out = m(x)
    assert set(map_dtypes) == {torch.bfloat16} and len(map_dtypes) > 1
    with torch.no_grad():
        expected = m(x.float()).bfloat16()
    assert torch.equal(out[[0, 2]], expected[[0, 2]])
    torch.testing.assert_close(out[1], expected[1], equal_nan=True, rtol=0, atol=0)


def test_under_autocast_a_float16_map_is_cast_up(map_dtypes):
    torch.manual_seed(0)
    m = randomize(plugattn.SCSA(16))
    x = torch.randn(2, 16, 6, 6).half()
    with torch.autocast("cpu", dtype=torch.float16):
        out = m(x)
    assert out.dtype == torch.float16 and set(map_dtypes) == {torch.float32}
    assert torch.equal(out, m(x.float()).half())
