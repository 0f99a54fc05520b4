"""HAM and SCSA against float64 known answers made by code nobody here wrote.

``../shared/fixtures/known_answers.pt`` (its ``about`` field says how it was made): SCSA cases from the
authors' own module (HZAI-ZJNU/SCSA, mmpretrain/models/attentions/SCSA.py at 8c46866f12fc), HAM cases from
an independent transcription of the paper's equations. Each case gives a state dict (random weights, not
the init), an input, the gradient fed back, and the output, the input's gradient and every parameter's
gradient, in train or eval mode. plugattn's module loads the state dict strictly and must give all of
them to 1e-10.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import plugattn

FIXTURE = Path(
    os.environ.get(
        "PLUGATTN_KNOWN_ANSWERS",
        Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "known_answers.pt",
    )
)
TOLERANCE = {"rtol": 1e-10, "atol": 1e-10}

# The authors' SCSA argument names -> plugattn.SCSA's (dim is the channel count; the rest are the same).
SCSA_ARGUMENTS = {
    "dim": "channels",
    "head_num": "head_num",
    "window_size": "window_size",
    "down_sample_mode": "down_sample_mode",
    "qkv_bias": "qkv_bias",
    "gate_layer": "gate_layer",
}
MODULES = {"scsa": (plugattn.SCSA, SCSA_ARGUMENTS), "ham": (plugattn.HAM, {"channels": "channels"})}


def load_cases() -> list[dict]:
    if not FIXTURE.is_file():
        return []
    return torch.load(FIXTURE, weights_only=True)["cases"]


CASES = load_cases()


def case_id(case: dict) -> str:
    options = ",".join(f"{k}={v}" for k, v in case["kwargs"].items())
    return f"{case['module']}({options})-{case['mode']}"


def build(case: dict) -> torch.nn.Module:
    cls, names = MODULES[case["module"]]
    unknown = set(case["kwargs"]) - set(names)
    assert not unknown, f"the fixture uses arguments this test does not map: {unknown}"
    kwargs = {names[k]: v for k, v in case["kwargs"].items()}
    module = cls(**kwargs).double()
    module.load_state_dict(case["state_dict"])  # strict: the authors' keys are ours
    return module.train(case["mode"] == "train")


def test_the_fixture_is_there_and_covers_both_modules():
    if not FIXTURE.is_file():
        pytest.skip(f"the known answers are not at {FIXTURE} (CI has them at ../shared/fixtures)")
    assert {c["module"] for c in CASES} == {"ham", "scsa"}
    assert {c["mode"] for c in CASES} == {"train", "eval"}
    assert all(c["input"].dtype == torch.float64 for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_known_answer(case):
    module = build(case)
    x = case["input"].clone().requires_grad_()
    out = module(x)
    torch.testing.assert_close(out, case["output"], **TOLERANCE)
    out.backward(case["grad_output"])
    torch.testing.assert_close(x.grad, case["grad_input"], **TOLERANCE)
    grads = {name: p.grad for name, p in module.named_parameters()}
    assert set(grads) == set(case["grad_params"])
    for name, expected in case["grad_params"].items():
        torch.testing.assert_close(grads[name], expected, **TOLERANCE, msg=lambda m, n=name: f"{n}: {m}")
