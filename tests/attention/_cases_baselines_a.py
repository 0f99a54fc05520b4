"""Matrix cases of the first group of baselines: SE, ECA, CBAM, Coordinate Attention, SimAM.

Parameter counts are written from the papers (with the papers' ``C // r`` rounding), not counted.
"""

import math

from tests.attention.cases import Case


def _se_params(c: int) -> int:
    r = max(1, c // 16)  # hidden units of the excitation MLP, the paper's C / r with r = 16
    return c * r + r + r * c + c  # FC C->r and FC r->C, biases on


def _eca_params(c: int) -> int:
    t = int(abs((math.log2(c) + 1) / 2))  # ECA-Net Eq. 12, gamma = 2, b = 1
    return t if t % 2 else t + 1  # one Conv1d(1, 1, k) without bias: k weights


def _cbam_params(c: int) -> int:
    r = max(1, c // 16)
    mlp = c * r + r + r * c + c  # shared MLP C->r->C, biases on
    return mlp + 2 * 7 * 7 + 2  # spatial Conv2d(2, 1, 7) without bias, BatchNorm2d(1) weight + bias


def _ca_params(c: int) -> int:
    m = max(8, c // 32)
    # conv1 C->m (bias) + BN(m) affine + conv_h and conv_w m->C (bias)
    return c * m + m + 2 * m + 2 * (m * c + c)


CASES = {
    # Not 16: its single ReLU unit is dead for both matrix samples under the matrix's random weights, so
    # fc1 gets a zero gradient (true of SE, not a bug); C = 16 is pinned in test_baselines_a.py.
    "se": Case(param_count=_se_params, channels=(32, 48)),
    "eca": Case(param_count=_eca_params, channels=(16, 128)),  # k = 3 and k = 5
    "cbam": Case(param_count=_cbam_params, channels=(16, 64)),
    "ca": Case(param_count=_ca_params, channels=(16, 320)),  # m = 8 (the floor) and m = 10
    "simam": Case(param_count=lambda c: 0, channels=(3, 16)),  # parameter-free
}
