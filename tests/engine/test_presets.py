"""Every preset builds its model and runs one batch of its own data pipeline through the engine.

The real datasets are not here: each preset's data is replaced by synthetic data of the preset's shape
(in-memory datasets) or by a small image folder of real JPEG files (``imagefolder``), and everything else
of the recipe is kept: model, attention, model options, augmentation, and the numerics it resolves to.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from plugattn import runs
from plugattn.data import SignalDataset, create_dataset, create_loader
from plugattn.engine import build_optimizer, build_scheduler
from plugattn.engine.config import PRESETS, resolve_config
from plugattn.engine.numerics import resolve_numerics
from plugattn.engine.train import train_one_epoch
from plugattn.runs.build import build_model, input_kwargs
from tests.data.formats import write_imagefolder

# The shapes of the presets' real datasets: (channels, pixels, classes).
REAL_SHAPES = {
    "cifar10": (3, 32, 10),
    "stl10": (3, 96, 10),  # the HAM paper's STL-10 runs at the full 96×96
    "fashion-mnist": (1, 28, 10),
}
# The presets' real signal sets: (electrodes, samples per trial, classes).
REAL_SIGNALS = {"eeg-blink": (4, 510, 2), "eeg-scp1": (6, 896, 2)}
BATCH = 4  # a few images: the model and the pipeline are what is checked, not throughput


def test_every_preset_is_covered():
    assert {cfg["data"] for cfg in PRESETS.values()} <= {*REAL_SHAPES, *REAL_SIGNALS, "imagefolder"}


def one_batch(cfg, tmp_path: Path):
    if cfg.data == "imagefolder":
        write_imagefolder(tmp_path, "train", per_class=2, size=(300, 260))  # larger than the crop
        dataset = create_dataset("imagefolder", "train", root=tmp_path)
    elif cfg.data in REAL_SIGNALS:
        c, length, k = REAL_SIGNALS[cfg.data]
        g = torch.Generator().manual_seed(0)
        signals = torch.randn(BATCH, c, length, generator=g)
        dataset = SignalDataset(signals, torch.arange(BATCH) % k, [f"c{i}" for i in range(k)], cfg.data)
    else:
        c, size, k = REAL_SHAPES[cfg.data]
        dataset = create_dataset(
            "synthetic", "train", num_samples=BATCH, image_size=size, in_chans=c, num_classes=k
        )
    loader = create_loader(dataset, batch_size=BATCH, train=True, seed=cfg.seed, augment=cfg.augment)
    loader.set_epoch(0)
    return dataset, next(iter(loader))


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_builds_and_trains_one_batch(preset, tmp_path):
    cfg = resolve_config(preset)
    dataset, (x, y) = one_batch(cfg, tmp_path)
    if cfg.data in REAL_SIGNALS:
        assert x.shape == (BATCH, *REAL_SIGNALS[cfg.data][:2]) and x.dtype == torch.float32
    else:
        size = cfg.augment.get("size", REAL_SHAPES.get(cfg.data, (0, 0))[1])
        assert x.shape == (BATCH, dataset.in_chans, size, size) and x.dtype == torch.float32
    length = REAL_SIGNALS.get(cfg.data, (0, None))[1]
    model = build_model(cfg, len(dataset.classes), dataset.in_chans, **input_kwargs(cfg, length))
    numerics = resolve_numerics(cfg.amp, cfg.channels_last, torch.device("cpu"))
    if numerics.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg.optimizer, lr=cfg.lr, momentum=cfg.momentum)
    scheduler = build_scheduler(optimizer, schedule="constant", total_steps=1, steps_per_epoch=1)
    before = [p.detach().clone() for p in model.parameters()]
    stats = train_one_epoch(
        model,
        [(x, y)],
        optimizer,
        scheduler,
        device=torch.device("cpu"),
        amp=numerics.amp,
        channels_last=numerics.channels_last,
        label_smoothing=cfg.label_smoothing,
    )
    assert stats["train_loss"] > 0
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))


def test_a_bad_model_option_fails_before_the_data_is_read(tmp_path):
    """The ham-stl10 preset once passed `small_stem`, which no builder takes, and failed only after
    STL-10 had been read; now the model is built (on the meta device) first."""
    bad = {"data": "cifar10", "data_dir": str(tmp_path / "absent"), "model_kwargs": {"small_stem": True}}
    cfg = resolve_config(overrides=bad)
    with pytest.raises(ValueError, match=r"resnet20 takes no option 'small_stem'; its options: .*stem"):
        runs.train(cfg, tmp_path / "run", progress=False, log=lambda *_: None)
    assert not (tmp_path / "run").exists()
