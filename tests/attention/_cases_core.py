"""Matrix cases of the two headline modules."""

from plugattn.attention._common import eca_kernel_size
from tests.attention.cases import Case


def _ham_params(c: int) -> int:
    # channel conv k + alpha + beta + shared 2->1 7x7 conv + two BatchNorm2d(1) (weight, bias)
    return eca_kernel_size(c) + 2 + 2 * 7 * 7 + 2 * 2


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
