"""Matrix cases of the second group of baselines: GC, triplet, RCCA, EMA, Shuffle Attention.

Parameter counts are written from the papers (with the papers' ``C // r`` rounding), not counted.
"""

from tests.attention.cases import Case


def _gc_params(c: int) -> int:
    r = max(1, c // 16)  # transform bottleneck, the paper's C / r with r = 16
    context = c + 1  # W_k: 1x1 conv C->1 with bias
    transform = (c * r + r) + 2 * r + (r * c + c)  # 1x1 C->r, LayerNorm([r, 1, 1]) affine, 1x1 r->C
    return context + transform


def _triplet_params(k: int = 7, branches: int = 3) -> int:
    return branches * (2 * k * k + 2)  # per branch: Conv2d(2, 1, k) without bias + BatchNorm2d(1) affine


def _rcca_params(c: int) -> int:
    r = max(1, c // 8)  # query/key width, the paper's C / 8
    return 2 * (c * r + r) + (c * c + c) + 1  # q, k: 1x1 C->C/8; v: 1x1 C->C (biases on); gamma


def _ema_groups(c: int) -> int:
    """EMA's default factor: the paper's 32 where it divides C, else the largest divisor below it."""
    return max(g for g in range(1, 33) if c % g == 0)


def _sa_groups(c: int) -> int:
    """SA's default groups: the paper's 64 where 128 divides C, else the largest G with 2G | C below it."""
    return max(g for g in range(1, 65) if c % (2 * g) == 0)


def _ema_params(c: int) -> int:
    g = c // _ema_groups(c)  # channels per group
    return (g * g + g) + (9 * g * g + g) + 2 * g  # 1x1 conv, 3x3 conv (biases on), GroupNorm(g, g)


def _sa_params(c: int) -> int:
    h = c // (2 * _sa_groups(c))  # channels per half-group
    return 4 * h + 2 * h  # cweight, cbias, sweight, sbias + GroupNorm(h, h) affine


CASES = {
    # Not 16: with C_r = 1 the LayerNorm over one value outputs its bias, so nothing before it learns.
    "gc": Case(param_count=_gc_params, channels=(32, 64)),
    "triplet": Case(param_count=lambda c: _triplet_params(), channels=(16, 64)),
    "rcca": Case(param_count=_rcca_params, channels=(16, 64)),  # C' = 2 and 8
    "ema": Case(param_count=_ema_params, channels=(24, 64)),  # G = 24 (1 channel each) and 32 (2 each)
    "sa": Case(param_count=_sa_params, channels=(24, 256)),  # G = 12 and 64: 1 and 2 channels per half
}
