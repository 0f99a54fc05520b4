"""Does a module help? Estimates over seeds and differences to a baseline, paired by seed.

A comparison's runs differ only in the attention module and the seed; the same seed gives the same data
order and the same initial weights of every layer the models share (``plugattn.runs.build``). So the
fair question is about the per-seed difference ``d_s = top1(module, s) - top1(baseline, s)``:

* its mean with a 95% confidence interval from Student's t with ``n - 1`` degrees of freedom,
  ``mean(d) ± t_{0.975, n-1} · sd(d) / √n``;
* the paired t-test's two-sided p-value (a one-sample t-test of ``d``, as ``scipy.stats.ttest_rel``);
* beside it, the exact sign-flip permutation test (``scipy.stats.permutation_test``, every one of the
  ``2^n`` sign patterns), which assumes nothing about the shape of the distribution; with ``n`` seeds
  its smallest possible p-value is ``2 / 2^n`` (0.25 with 3 seeds, 0.0625 with 5), which the report
  states, so that a reader sees when the seeds are too few for it to ever reach 5%;
* a verdict at the 5% level of the t-test: "better", "worse", or "no detectable difference"; with
  fewer than two paired seeds, "too few seeds".

scipy is the ``train`` extra's statistics library (``pip install 'plugattn[train]'``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Difference", "Estimate", "estimate", "paired_difference", "smallest_permutation_p"]

CONFIDENCE = 0.95
ALPHA = 0.05


def _stats():
    try:
        import scipy.stats
    except ImportError as err:  # pragma: no cover - scipy is in the train extra
        raise ImportError("compare's statistics need scipy: pip install 'plugattn[train]'") from err
    return scipy.stats


@dataclass(frozen=True)
class Estimate:
    """A mean over seeds with its sample standard deviation and 95% t-interval (``nan`` for one run)."""

    n: int
    mean: float
    std: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def estimate(values: Sequence[float], confidence: float = CONFIDENCE) -> Estimate:
    """Mean, standard deviation (``n - 1``) and the t-interval of ``values``."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("values must hold at least one number")
    mean = float(x.mean())
    if x.size == 1:
        return Estimate(1, mean, 0.0, math.nan, math.nan)
    std = float(x.std(ddof=1))
    half = float(_stats().t.ppf(0.5 + confidence / 2, x.size - 1)) * std / math.sqrt(x.size)
    return Estimate(int(x.size), mean, std, mean - half, mean + half)


@dataclass(frozen=True)
class Difference:
    """``module - baseline`` over the seeds both finished, with its tests and verdict."""

    seeds: tuple[int, ...]
    mean: float
    low: float
    high: float
    p_t: float  # paired t-test, two-sided
    p_permutation: float  # exact sign-flip test, two-sided
    verdict: str

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "seeds": list(self.seeds)}


def paired_difference(
    values: Mapping[int, float],
    baseline: Mapping[int, float],
    *,
    confidence: float = CONFIDENCE,
    alpha: float = ALPHA,
) -> Difference:
    """The difference ``values - baseline`` paired by seed (the keys); seeds only one side has are left
    out. See the module docstring for the interval, the tests and the verdict."""
    seeds = tuple(sorted(set(values) & set(baseline)))
    d = np.array([values[s] - baseline[s] for s in seeds], dtype=np.float64)
    if d.size < 2:
        mean = float(d.mean()) if d.size else math.nan
        return Difference(seeds, mean, math.nan, math.nan, math.nan, math.nan, "too few seeds")
    interval = estimate(d, confidence)
    p_t = _paired_t_p(d)
    p_perm = _sign_flip_p(d)
    if p_t < alpha:
        verdict = "better" if interval.mean > 0 else "worse"
    else:
        verdict = "no detectable difference"
    return Difference(seeds, interval.mean, interval.low, interval.high, p_t, p_perm, verdict)


def _paired_t_p(d: np.ndarray) -> float:
    if np.all(d == d[0]):  # no spread: t is 0 (no difference) or infinite (the same gain every seed)
        return 1.0 if d[0] == 0 else 0.0
    return float(_stats().ttest_1samp(d, 0.0).pvalue)


def _sign_flip_p(d: np.ndarray) -> float:
    if np.all(d == 0):
        return 1.0
    result = _stats().permutation_test(
        (d,),
        lambda x, axis: np.abs(np.mean(x, axis=axis)),
        permutation_type="samples",  # one sample: flips the sign of each difference
        n_resamples=math.inf,  # every sign pattern: exact
        alternative="greater",  # |mean| at least as large as observed
        vectorized=True,
    )
    return float(result.pvalue)


def smallest_permutation_p(n: int) -> float:
    """The smallest p-value the exact two-sided sign-flip test can give with ``n`` seeds."""
    return 2.0 / 2**n if n >= 1 else math.nan
