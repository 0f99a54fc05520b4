"""Matrix cases of the two headline modules."""

import math

from tests.attention.cases import Case


def _eca_kernel(c: int) -> int:
    """ECA-Net Eq. 12 as HAM uses it (Eq. 6), γ = 2, b = 1: t = ⌊|(log2 C + 1) / 2|⌋, made odd upwards."""
    t = int(abs((math.log2(c) + 1) / 2))
    return t if t % 2 == 1 else t + 1


def _ham_params(c: int) -> int:
    # channel conv k + alpha + beta + shared 2->1 7x7 conv + two BatchNorm2d(1) (weight, bias)
    return _eca_kernel(c) + 2 + 2 * 7 * 7 + 2 * 2


def _scsa_params(c: int) -> int:
    g = c // 4
    dw = sum(g * k + g for k in (3, 5, 7, 9))  # four depthwise Conv1d with bias
    norms = 3 * 2 * c  # norm_h, norm_w, norm: weight + bias each
    qkv = 3 * c  # depthwise 1x1, no bias
    return dw + norms + qkv


CASES = {
    "ham": Case(param_count=_ham_params, channels=(16, 64)),
    "scsa": Case(param_count=_scsa_params, channels=(16, 64)),
}
