"""Loaders: seeded, sharded, resumable batches of ``(x float32 (B, C, H, W), y int64 (B,))`` for images, or
``(x float32 (B, C, L), y int64 (B,))`` for signals.

The batches of epoch ``e`` depend only on ``(seed, e)`` (and the rank): the order comes from a
``torch.Generator`` seeded from them, augmentation from another, and global RNG state is neither read nor
changed. So a run resumed at an epoch boundary, after ``set_epoch(e)``, sees exactly the batches the
killed run would have seen.

Sharding for DistributedDataParallel (``rank`` of ``world_size``):

* training: the epoch's permutation is padded by repeating its first entries up to a multiple of
  ``world_size`` (as ``torch.utils.data.DistributedSampler`` does) and rank ``r`` takes positions
  ``r, r + world_size, ...``: equal shards, disjoint up to the padding, together covering every sample;
* evaluation: no shuffling and no padding; rank ``r`` takes samples ``r, r + world_size, ...`` of the
  dataset, so every sample is counted exactly once across ranks. Shards may differ by one sample and
  so by one batch: sum correct counts and losses per rank and all-reduce the totals once after the loop,
  never a collective per batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from plugattn._checks import check_int
from plugattn.data._seed import derive_seed
from plugattn.data.records import ArrayDataset, FolderDataset, SignalDataset
from plugattn.data.transforms import BatchAugment, RandomResizedCropFlip, ResizeCenterCrop, SignalAugment

__all__ = ["Loader", "create_loader", "shard_indices"]

_ARRAY_KEYS = ("pad", "flip", "mean", "std")
_FOLDER_KEYS = ("size", "resize", "scale", "ratio", "flip", "mean", "std")
_SIGNAL_KEYS = ("shift", "noise")

Dataset = ArrayDataset | FolderDataset | SignalDataset


def shard_indices(
    num_items: int, *, seed: int, epoch: int, train: bool, rank: int = 0, world_size: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """The dataset indices rank ``rank`` visits in ``epoch``, in order, and a 63-bit seed for each.

    Returns ``(indices, sample_seeds)``, both int64 ``(n,)``; ``sample_seeds`` are drawn for the whole
    padded epoch before sharding, so they do not depend on how many workers decode the images.
    """
    if train:
        order = torch.randperm(
            num_items, generator=torch.Generator().manual_seed(derive_seed("order", seed, epoch))
        )
        total = math.ceil(num_items / world_size) * world_size
        if total > num_items:  # repeat from the start (several times if num_items < world_size)
            order = order.repeat(math.ceil(total / num_items))[:total]
    else:
        order = torch.arange(num_items)
        total = num_items
    g = torch.Generator().manual_seed(derive_seed("sample-seeds", seed, epoch))
    seeds = torch.randint(0, 2**62, (total,), generator=g)  # (total,)
    return order[rank::world_size], seeds[rank::world_size]


class Loader:
    """Batches of one rank's shard of a dataset for one epoch at a time (see the module docstring).

    Build it with :func:`create_loader`. Call :meth:`set_epoch` before iterating each epoch; iterating
    twice without it repeats the same batches.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        batch_size: int,
        train: bool,
        seed: int,
        rank: int,
        world_size: int,
        drop_last: bool,
        batch_transform: BatchAugment | SignalAugment,
        sample_transform: Callable[[Any, int], torch.Tensor] | None = None,
        num_workers: int = 0,
    ) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.train = train
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        # images: uint8 batch -> float32, normalised (and augmented); signals: float32 -> float32 (augmented)
        self.batch_transform = batch_transform
        self.sample_transform = sample_transform  # image folders: (PIL image, seed) -> uint8 (3, S, S)
        self.num_workers = num_workers
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation the next iteration yields."""
        self.epoch = check_int("epoch", epoch, minimum=0)

    @property
    def num_samples(self) -> int:
        """Samples this rank visits per epoch (padding included in training; dropped ones included)."""
        n = len(self.dataset)
        if self.train:
            return math.ceil(n / self.world_size)
        return len(range(self.rank, n, self.world_size))

    def __len__(self) -> int:
        """Batches per epoch for this rank."""
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def _shard(self) -> tuple[torch.Tensor, torch.Tensor]:
        return shard_indices(
            len(self.dataset),
            seed=self.seed,
            epoch=self.epoch,
            train=self.train,
            rank=self.rank,
            world_size=self.world_size,
        )

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if isinstance(self.dataset, ArrayDataset):
            return self._iter_tensor(self.dataset.images)
        if isinstance(self.dataset, SignalDataset):
            return self._iter_tensor(self.dataset.signals)
        return self._iter_folder()

    def _iter_tensor(self, samples: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of ``samples``: uint8 images ``(N, C, H, W)`` or float32 signals ``(N, C, L)``."""
        indices, _ = self._shard()
        generator = torch.Generator().manual_seed(derive_seed("augment", self.seed, self.epoch, self.rank))
        for b in range(len(self)):
            idx = indices[b * self.batch_size : (b + 1) * self.batch_size]  # (B,)
            x = self.batch_transform(samples[idx], generator)  # (B, C, H, W) or (B, C, L), float32
            yield x, self.dataset.labels[idx]

    def _iter_folder(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        indices, seeds = self._shard()
        loader = DataLoader(
            _FolderSamples(self.dataset, self.sample_transform),
            batch_size=self.batch_size,
            sampler=list(zip(indices.tolist(), seeds.tolist(), strict=True)),
            num_workers=self.num_workers,
            drop_last=self.drop_last,
            # DataLoader draws its workers' base seed from this generator, not from the global RNG.
            generator=torch.Generator().manual_seed(derive_seed("workers", self.seed, self.epoch, self.rank)),
        )
        for images, labels in loader:  # uint8 (B, 3, S, S), int64 (B,)
            yield self.batch_transform(images), labels

    def __repr__(self) -> str:
        return (
            f"Loader({self.dataset.name} {self.dataset.split}, batch_size={self.batch_size}, "
            f"train={self.train}, "
            f"seed={self.seed}, rank={self.rank}/{self.world_size}, batches={len(self)}, "
            f"sample_transform={self.sample_transform}, batch_transform={self.batch_transform})"
        )


class _FolderSamples(TorchDataset):
    """Decodes ``(index, seed)`` keys into ``(uint8 (3, S, S), label)`` in the DataLoader's workers."""

    def __init__(self, folder: FolderDataset, transform: Any) -> None:
        self.folder = folder
        self.transform = transform

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, seed = key
        return self.transform(self.folder.load(index), seed), int(self.folder.labels[index])


def _check_augment(augment: dict[str, Any] | None, allowed: tuple[str, ...], kind: str) -> dict[str, Any]:
    augment = dict(augment or {})
    unknown = sorted(set(augment) - set(allowed))
    if unknown:
        raise ValueError(f"augment keys {unknown} do not apply to {kind}; allowed: {', '.join(allowed)}")
    return augment


def create_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    train: bool,
    seed: int,
    augment: dict[str, Any] | None = None,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
    drop_last: bool | None = None,
) -> Loader:
    """A :class:`Loader` over ``dataset`` for one rank.

    Args:
        dataset: an :class:`ArrayDataset` (batches sliced from memory, augmented as whole tensors), a
            :class:`FolderDataset` (decoded with Pillow by ``num_workers`` worker processes) or a
            :class:`SignalDataset` (float32 ``(B, C, L)`` batches sliced from memory, already standardised).
        batch_size: samples per batch on this rank.
        train: shuffle, pad shards to equal size and augment (True), or visit each sample once in order
            with the evaluation transform (False).
        seed: with the epoch, fixes order and augmentation.
        augment: training augmentation (ignored where ``train=False``, except the sizes and statistics).
            In-memory data: ``pad`` (pixels, default 0), ``flip`` (default False). Image folders: ``size``
            (output pixels, default 224), ``resize`` (shorter side before the evaluation centre crop,
            default 256), ``scale`` (RandomResizedCrop area range, default (0.08, 1)), ``ratio`` (default
            (3/4, 4/3)), ``flip`` (default False). Both: ``mean`` and ``std`` to override the dataset's.
            Signals: ``shift`` (largest random time shift in samples, zero fill, default 0) and ``noise``
            (Gaussian noise std in standardised units, default 0); see :class:`SignalAugment`.
            ``None``: no augmentation (image folders are then resized and centre-cropped in training too);
            a dict, even empty, turns RandomResizedCrop on for image-folder training.
        rank: this process's rank, in ``[0, world_size)``.
        world_size: number of processes sharing the epoch.
        num_workers: decoding processes for image folders (0: decode in this process); unused for
            in-memory images and signals, which need none.
        drop_last: drop the last, smaller batch; default True in training (no tiny last batch for
            BatchNorm), False in evaluation, where True is refused because it would skip samples.
    """
    drop_last = _check_loader_args(
        dataset,
        batch_size=batch_size,
        train=train,
        seed=seed,
        rank=rank,
        world_size=world_size,
        num_workers=num_workers,
        drop_last=drop_last,
    )
    batch_transform, sample_transform = _transforms(dataset, augment, train)
    loader = Loader(
        dataset,
        batch_size=batch_size,
        train=train,
        seed=seed,
        rank=rank,
        world_size=world_size,
        drop_last=drop_last,
        batch_transform=batch_transform,
        sample_transform=sample_transform,
        num_workers=num_workers,
    )
    if len(loader) == 0:
        raise ValueError(
            f"batch_size={batch_size} is larger than this rank's {loader.num_samples} samples "
            "with drop_last=True:"
            " the epoch would have no batch"
        )
    return loader


def _check_loader_args(
    dataset: Dataset,
    *,
    batch_size: int,
    train: bool,
    seed: int,
    rank: int,
    world_size: int,
    num_workers: int,
    drop_last: bool | None,
) -> bool:
    """:func:`create_loader`'s arguments checked; returns ``drop_last`` resolved."""
    if not isinstance(dataset, (ArrayDataset, FolderDataset, SignalDataset)):
        raise ValueError(
            f"dataset must be an ArrayDataset, FolderDataset or SignalDataset, got {type(dataset).__name__}"
        )
    check_int("batch_size", batch_size, minimum=1)
    check_int("seed", seed, minimum=0)
    check_int("world_size", world_size, minimum=1)
    check_int("rank", rank, minimum=0)
    if rank >= world_size:
        raise ValueError(f"rank must lie in [0, world_size={world_size}), got {rank}")
    check_int("num_workers", num_workers, minimum=0)
    if not isinstance(train, bool):
        raise ValueError(f"train must be a bool, got {train!r}")
    if drop_last is None:
        drop_last = train
    elif not isinstance(drop_last, bool):
        raise ValueError(f"drop_last must be a bool or None, got {drop_last!r}")
    if drop_last and not train:
        raise ValueError("drop_last=True with train=False would leave samples out of the evaluation")
    if len(dataset) == 0:
        raise ValueError(f"dataset {dataset.name!r} split {dataset.split!r} is empty")
    return drop_last


def _transforms(dataset: Dataset, augment: dict[str, Any] | None, train: bool):
    """The batch transform (augmentation of in-memory batches, normalisation of images) and the per-image
    transform of image folders (``None`` for in-memory data)."""
    if isinstance(dataset, SignalDataset):
        aug = _check_augment(augment, _SIGNAL_KEYS, "signal datasets")
        return SignalAugment(**(aug if train else {})), None
    if isinstance(dataset, ArrayDataset):
        aug = _check_augment(augment, _ARRAY_KEYS, "in-memory datasets")
        stats = {"mean": aug.pop("mean", dataset.mean), "std": aug.pop("std", dataset.std)}
        return BatchAugment(**(aug if train else {}), **stats), None
    aug = _check_augment(augment, _FOLDER_KEYS, "image folders")
    stats = {"mean": aug.pop("mean", dataset.mean), "std": aug.pop("std", dataset.std)}
    batch_transform = BatchAugment(**stats)  # normalise only: augmentation happens per image
    size = aug.pop("size", 224)
    resize = aug.pop("resize", 256)
    if train and augment is not None:
        return batch_transform, RandomResizedCropFlip(size, flip=aug.pop("flip", False), **aug)
    return batch_transform, ResizeCenterCrop(size, resize)
