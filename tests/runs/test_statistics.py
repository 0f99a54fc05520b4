"""The comparison's statistics against hand-computed values and brute force (no scipy in the checks)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from plugattn.runs.statistics import estimate, paired_difference, smallest_permutation_p

# Student's t quantile t_{0.975, 3} (tables: 3.182446305...).
T_975_DF3 = 3.182446305284263


def t_cdf_df3(t: float) -> float:
    """Student's t CDF with 3 degrees of freedom in closed form."""
    u = t / math.sqrt(3)
    return 0.5 + (u / (1 + u * u) + math.atan(u)) / math.pi


def test_estimate_is_the_t_interval():
    e = estimate([1.0, 2.0, 3.0, 4.0])
    sd = math.sqrt(((1.5**2) * 2 + (0.5**2) * 2) / 3)  # 1.2909944...
    assert e.n == 4 and e.mean == 2.5 and e.std == pytest.approx(sd, rel=1e-12)
    half = T_975_DF3 * sd / 2
    assert (e.low, e.high) == (pytest.approx(2.5 - half, rel=1e-9), pytest.approx(2.5 + half, rel=1e-9))
    one = estimate([90.0])
    assert one.n == 1 and one.std == 0 and math.isnan(one.low) and math.isnan(one.high)
    with pytest.raises(ValueError, match="at least one number"):
        estimate([])


def test_paired_difference_by_hand():
    module = {0: 91.0, 1: 92.0, 2: 93.0, 3: 94.0, 7: 50.0}  # seed 7 has no baseline: left out
    base = {0: 90.5, 1: 91.5, 2: 92.0, 3: 93.5, 9: 99.0}
    d = paired_difference(module, base)
    # differences 0.5, 0.5, 1.0, 0.5: mean 0.625, sd 0.25, se 0.125, t = 5 with 3 degrees of freedom
    assert d.seeds == (0, 1, 2, 3)
    assert d.mean == pytest.approx(0.625)
    assert d.low == pytest.approx(0.625 - T_975_DF3 * 0.125) and d.high == pytest.approx(
        0.625 + T_975_DF3 * 0.125
    )
    assert d.p_t == pytest.approx(2 * (1 - t_cdf_df3(5.0)), rel=1e-9)  # 0.01539
    assert d.p_permutation == pytest.approx(2 / 16)  # only all-plus and all-minus reach |mean| 0.625
    assert d.verdict == "better"
    worse = paired_difference(base, module)
    assert worse.verdict == "worse" and worse.p_t == pytest.approx(d.p_t) and worse.mean == -d.mean


@pytest.mark.parametrize("seed", range(5))
def test_sign_flip_p_is_brute_force(seed):
    rng = np.random.default_rng(seed)
    diffs = rng.normal(0.3, 1.0, size=int(rng.integers(3, 8)))
    observed = abs(diffs.mean())
    flips = [abs((diffs * np.array(s)).mean()) for s in itertools.product((1, -1), repeat=len(diffs))]
    expected = sum(f >= observed - 1e-12 for f in flips) / len(flips)
    d = paired_difference(dict(enumerate(diffs + 80)), dict(enumerate(np.full(len(diffs), 80.0))))
    assert d.p_permutation == pytest.approx(expected, abs=1e-12)


def test_verdicts_at_the_edges():
    noisy = paired_difference({0: 91, 1: 89, 2: 92}, {0: 90, 1: 90, 2: 90})  # +1, -1, +2
    assert noisy.verdict == "no detectable difference" and noisy.p_t > 0.05
    same = paired_difference({0: 90, 1: 91}, {0: 90, 1: 91})
    assert same.mean == 0 and same.p_t == 1.0 and same.p_permutation == 1.0
    assert same.verdict == "no detectable difference"
    steady = paired_difference({0: 91, 1: 92, 2: 93}, {0: 90, 1: 91, 2: 92})  # +1 every seed
    assert steady.p_t == 0.0 and steady.verdict == "better"
    assert steady.p_permutation == pytest.approx(2 / 8)  # what 3 seeds allow at best
    lone = paired_difference({0: 91, 1: 92}, {0: 90})
    assert lone.verdict == "too few seeds" and lone.seeds == (0,) and math.isnan(lone.p_t)
    assert smallest_permutation_p(3) == 0.25 and smallest_permutation_p(5) == 0.0625
