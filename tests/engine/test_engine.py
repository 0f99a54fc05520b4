"""Engine pieces: schedules, optimiser groups, atomic checkpoints, RNG capture, evaluation counts."""

from __future__ import annotations

import math
import os
import random

import pytest
import torch
from torch import nn

from plugattn.engine import atomic_save, build_optimizer, build_scheduler, evaluate, load_checkpoint
from plugattn.engine.checkpoint import capture_rng, remove_stale_temps, restore_rng
from plugattn.engine.config import PRESETS, TrainConfig, resolve_config
from plugattn.engine.optim import lr_multiplier


def test_step_schedule_divides_at_milestones():
    f = lr_multiplier("step", total_steps=200, steps_per_epoch=10, milestones=[6, 12, 16], gamma=0.2)
    assert f(0) == 1 and f(59) == 1
    assert f(60) == pytest.approx(0.2) and f(119) == pytest.approx(0.2)
    assert f(120) == pytest.approx(0.04) and f(160) == pytest.approx(0.008)


def test_warmup_then_cosine():
    f = lr_multiplier("cosine", total_steps=110, steps_per_epoch=10, warmup_steps=10)
    assert [f(t) for t in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.5)
    assert f(110) == pytest.approx(0.0, abs=1e-12)


def test_onecycle_rises_then_falls():
    f = lr_multiplier("onecycle", total_steps=100, steps_per_epoch=10)
    values = [f(t) for t in range(100)]
    peak = values.index(max(values))
    assert peak == 29 and values[peak] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(values[:peak], values[1 : peak + 1], strict=True))
    assert all(a >= b for a, b in zip(values[peak:], values[peak + 1 :], strict=False))
    assert values[-1] < 0.01


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"schedule": "linear"}, r"schedule must be one of"),
        ({"schedule": "step", "total_steps": 0}, r"total_steps must be >= 1"),
        ({"schedule": "step", "gamma": 0}, r"gamma must lie in"),
    ],
)
def test_schedule_errors(kwargs, match):
    base = {"total_steps": 10, "steps_per_epoch": 1}
    with pytest.raises(ValueError, match=match):
        lr_multiplier(**{**base, **kwargs})


def test_scheduler_steps_the_optimiser_lr():
    model = nn.Linear(2, 2)
    opt = build_optimizer(model, "sgd", lr=0.1)
    sched = build_scheduler(opt, schedule="step", total_steps=4, steps_per_epoch=2, milestones=[1], gamma=0.5)
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.1, 0.1, 0.05, 0.05])


def test_no_decay_groups_exempt_norms_biases_and_scalars():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2))
    opt = build_optimizer(model, "sgd", weight_decay=1e-4, decay_norm_and_bias=False)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0
    assert {tuple(p.shape) for p in decay["params"]} == {(4, 3, 3, 3), (2, 4)}
    assert len(no_decay["params"]) == 4  # conv bias, BN weight and bias, linear bias
    opt = build_optimizer(model, "adamw", lr=1e-3, weight_decay=0.05)
    assert isinstance(opt, torch.optim.AdamW)


def test_bad_optimizer_arguments():
    with pytest.raises(ValueError, match=r"optimizer must be one of 'sgd', 'adamw'; got 'adam'"):
        build_optimizer(nn.Linear(1, 1), "adam")
    with pytest.raises(ValueError, match=r"lr must lie in \(0, inf\)"):
        build_optimizer(nn.Linear(1, 1), "sgd", lr=0)


def test_atomic_save_never_leaves_a_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_save({"model": {"w": torch.ones(3)}, "config": {}}, path)

    def broken_save(obj, f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(RuntimeError, match="disk full"):
        atomic_save({"model": {"w": torch.zeros(3)}, "config": {}}, path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(3))  # the old one, intact
    assert os.listdir(tmp_path) == ["last.pt"]  # no temp file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert (path.stat().st_mode & 0o777) == 0o666 & ~umask


def test_stale_temp_files_of_a_killed_writer_are_removed(tmp_path):
    path = tmp_path / "last.pt"
    atomic_save({"model": {}, "config": {}}, path)
    stale = tmp_path / ".last.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    other = tmp_path / "notes.tmp"
    other.write_text("not ours")
    assert remove_stale_temps(path) == [stale]
    assert sorted(os.listdir(tmp_path)) == ["last.pt", "notes.tmp"]


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"cannot be read"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.ones(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"is not a plugattn checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_rng_round_trip_through_a_weights_only_checkpoint(tmp_path):
    torch.manual_seed(3)
    random.seed(3)
    atomic_save({"model": {}, "config": {}, "rng": capture_rng()}, tmp_path / "c.pt")
    expected = (torch.rand(4), random.random())
    torch.manual_seed(99)
    random.seed(99)
    restore_rng(load_checkpoint(tmp_path / "c.pt")["rng"])
    got = (torch.rand(4), random.random())
    assert torch.equal(got[0], expected[0]) and got[1] == expected[1]


class Fixed(nn.Module):
    """Returns pre-set logits, so evaluation counts can be checked by hand."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits
        self.i = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.logits[self.i : self.i + len(x)]
        self.i += len(x)
        return out


def test_evaluate_counts_top1_top5_and_confusion():
    logits = torch.tensor(
        [
            [9.0, 1, 2, 3, 4, 5, 0],  # true 0: top-1 hit
            [0.0, 1, 9, 3, 4, 5, 6],  # true 1: miss (predicted 2); 1 is not in the top 5
            [1.0, 9, 2, 3, 4, 5, 6],  # true 2: predicted 1; 2 is rank 6 of 7 -> top-5 miss
            [6.0, 5, 4, 9, 2, 1, 0],  # true 4: predicted 3; 4 is rank 4 -> top-5 hit
        ]
    )
    y = torch.tensor([0, 1, 2, 4])
    loader = [(torch.zeros(2, 1), y[:2]), (torch.zeros(2, 1), y[2:])]
    r = evaluate(Fixed(logits), loader, num_classes=7, device=torch.device("cpu"))
    assert r["top1"] == 25.0 and r["top5"] == 50.0 and r["samples"] == 4
    assert r["loss"] == pytest.approx(nn.functional.cross_entropy(logits, y).item())
    expected = torch.zeros(7, 7, dtype=torch.int64)
    for t, p in [(0, 0), (1, 2), (2, 1), (4, 3)]:
        expected[t, p] += 1
    assert torch.equal(r["confusion"], expected)


class _LeftRight(nn.Module):
    """Logits that see which way an image faces: class 0 scores its left column, class 1 its right."""

    def forward(self, x):
        return torch.stack((x[:, 0, 0, 0], x[:, 0, 0, -1]), dim=1)


def test_evaluate_with_flip_averages_the_mirror_image():
    x = torch.tensor([[[[3.0, 0.0, 1.0]]], [[[0.0, 0.0, 2.0]]]])  # (2, 1, 1, 3)
    y = torch.tensor([0, 1])
    cpu = torch.device("cpu")
    plain = evaluate(_LeftRight(), [(x, y)], num_classes=2, device=cpu)
    flipped = evaluate(_LeftRight(), [(x, y)], num_classes=2, device=cpu, flip=True)
    assert plain["top1"] == 100.0
    # averaged logits: image 0 -> (2, 2) (a tie: argmax picks class 0), image 1 -> (1, 1) (class 0)
    assert flipped["top1"] == 50.0
    expected = nn.functional.cross_entropy(torch.tensor([[2.0, 2.0], [1.0, 1.0]]), y)
    assert flipped["loss"] == pytest.approx(expected.item())


def test_config_resolution_order(tmp_path):
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("epochs: 7\nlr: 0.3\n")
    cfg = resolve_config("ham-cifar", yaml_file, {"lr": 0.05, "seed": None})
    assert cfg.data == "cifar10" and cfg.epochs == 7 and cfg.lr == 0.05 and cfg.seed == 0
    assert resolve_config(overrides={"attention": "none"}).attention is None


@pytest.mark.parametrize(
    "preset,overrides,yaml_text,match",
    [
        ("nope", {}, None, r"preset must be one of"),
        (None, {"epochs": -1}, None, r"epochs must be >= 1, got -1"),
        (None, {"epoch": 3}, None, r"flags: unknown config field 'epoch'"),
        (None, {"amp": "int8"}, None, r"amp must be one of 'auto', 'none', 'bf16', 'fp16'; got 'int8'"),
        (None, {"device": "tpu"}, None, r"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'"),
        (None, {}, "- a list\n", r"must hold a mapping of fields"),
        (None, {}, "a: [unclosed\n", r"is not valid YAML"),
    ],
)
def test_config_errors(tmp_path, preset, overrides, yaml_text, match):
    path = None
    if yaml_text is not None:
        path = tmp_path / "bad.yaml"
        path.write_text(yaml_text)
    with pytest.raises(ValueError, match=match):
        resolve_config(preset, path, overrides)


def test_presets_hold_the_papers_recipes():
    ham = resolve_config("ham-cifar")
    recipe = (ham.lr, ham.batch_size, ham.epochs, ham.milestones, ham.gamma, ham.weight_decay, ham.momentum)
    assert recipe == (0.1, 128, 200, [60, 120, 160], 0.2, 5e-4, 0.9)
    assert ham.augment == {"pad": 4, "flip": True}
    stl = resolve_config("ham-stl10")
    assert stl.batch_size == 64 and stl.augment["pad"] == 12 and stl.data_options["split_mode"] == "ham"
    scsa = resolve_config("scsa-imagenet")
    assert (scsa.lr, scsa.weight_decay, scsa.milestones, scsa.gamma, scsa.epochs) == (
        0.05,
        1e-4,
        [30, 60, 90],
        0.1,
        100,
    )
    for name, data in (("eegnet-blink", "eeg-blink"), ("eegnet-scp1", "eeg-scp1")):
        eeg = resolve_config(name)
        recipe = (
            eeg.data,
            eeg.model,
            eeg.optimizer,
            eeg.lr,
            eeg.batch_size,
            eeg.epochs,
            eeg.schedule,
            eeg.amp,
        )
        assert recipe == (data, "eegnet", "adamw", 1e-3, 64, 100, "cosine", "none")
    assert set(PRESETS) == {
        "ham-cifar",
        "ham-stl10",
        "scsa-imagenet",
        "fmnist-cpu",
        "eegnet-blink",
        "eegnet-scp1",
    }
    assert math.isfinite(TrainConfig().lr)


def test_saved_config_round_trips_exactly():
    cfg = resolve_config("fmnist-cpu", None, {"attention": "none", "data_dir": None})
    assert cfg.attention is None
    again = TrainConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.attention is None
