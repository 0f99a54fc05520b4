"""Progressive resizing: the per-epoch scale and the resized batch, by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from plugattn.engine.progressive import check_progressive, epoch_scale, resize_batch


def test_scale_grows_linearly_then_holds_full_size():
    options = {"initial_scale": 0.5, "finetune_fraction": 0.2}
    # 5 epochs: the ramp covers the first 4 (0.5 -> 1 in steps of 1/8), the last trains at full size
    assert [epoch_scale(e, 5, options) for e in range(5)] == [0.5, 0.625, 0.75, 0.875, 1.0]
    assert [epoch_scale(e, 4, {"initial_scale": 0.6, "finetune_fraction": 0.5}) for e in range(4)] == [
        0.6, 0.8, 1.0, 1.0,
    ]  # fmt: skip
    assert epoch_scale(0, 3, {}) == 1.0  # off
    assert epoch_scale(0, 3, {"initial_scale": 0.5, "finetune_fraction": 1.0}) == 1.0  # no ramp at all


def test_sizes_round_to_multiples_of_four():
    x = torch.rand(2, 1, 28, 28)
    assert resize_batch(x, 0.5).shape[-2:] == (16, 16)  # 14 -> 16
    assert resize_batch(x, 0.75).shape[-2:] == (20, 20)  # 21 -> 20
    assert resize_batch(x, 0.875).shape[-2:] == (24, 24)  # 24.5 -> 24
    assert resize_batch(x, 1.0) is x
    assert resize_batch(torch.rand(1, 3, 32, 48), 0.5).shape[-2:] == (16, 24)
    assert resize_batch(torch.rand(1, 1, 6, 6), 0.1).shape[-2:] == (4, 4)  # never below 4


def test_resize_is_antialiased_bilinear():
    x = torch.rand(2, 3, 32, 32)
    expected = F.interpolate(x, size=(16, 16), mode="bilinear", antialias=True, align_corners=False)
    torch.testing.assert_close(resize_batch(x, 0.5), expected)
    # antialiased 2x downscaling of a constant image keeps the constant
    torch.testing.assert_close(
        resize_batch(torch.full((1, 1, 8, 8), 0.3), 0.5), torch.full((1, 1, 4, 4), 0.3)
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ([0.5], "must be a mapping"),
        ({"initial": 0.5}, "unknown option"),
        ({"initial_scale": 0}, "initial_scale must lie in"),
        ({"initial_scale": 1.5}, "initial_scale must lie in"),
        ({"initial_scale": 0.5, "finetune_fraction": -0.1}, "finetune_fraction must lie in"),
    ],
)
def test_bad_options_name_the_field(options, message):
    with pytest.raises(ValueError, match=message):
        check_progressive(options)
