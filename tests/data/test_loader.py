"""Loaders: determinism from (seed, epoch), untouched global RNG, DDP sharding, the folder worker pool."""

from __future__ import annotations

import pytest
import torch

from plugattn.data import ArrayDataset, create_dataset, create_loader
from plugattn.data.loader import shard_indices
from tests.data import formats as fmt


def _indexed_dataset(n: int) -> ArrayDataset:
    """Image i is filled with the value i, so a batch tells which samples it holds."""
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 4, 4).contiguous()
    return ArrayDataset(
        images, torch.arange(n) % 2, ["a", "b"], (0.0,), (1.0,), name="indexed", split="train"
    )


def _ids(loader) -> list[int]:
    """The sample ids a loader yields, read back from the (normalise-only) pixel values."""
    return [int(round(v * 255)) for x, _ in loader for v in x[:, 0, 0, 0].tolist()]


def _batches(loader, epoch):
    loader.set_epoch(epoch)
    return list(loader)


def test_same_seed_and_epoch_same_batches():
    ds = create_dataset("synthetic", "train", num_samples=96, image_size=8)
    make = lambda: create_loader(ds, batch_size=16, train=True, seed=7, augment={"pad": 2, "flip": True})  # noqa: E731
    a, b = _batches(make(), 3), _batches(make(), 3)
    assert len(a) == 6
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        assert xa.dtype == torch.float32 and xa.shape == (16, 3, 8, 8) and ya.dtype == torch.int64
    loader = make()
    other = _batches(loader, 4)
    assert not torch.equal(torch.cat([y for _, y in a]), torch.cat([y for _, y in other]))
    assert not torch.equal(_batches(create_loader(ds, batch_size=16, train=True, seed=8), 3)[0][1], a[0][1])
    # iterating again without set_epoch repeats the epoch (what a resumed run relies on)
    assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(list(loader), other, strict=True))


def test_tiny_model_learns_synthetic():
    """The synthetic data is learnable: a linear classifier beats chance (10%) by far in 3 short epochs."""
    train = create_dataset("synthetic", "train", num_samples=320, image_size=8, seed=1)
    test = create_dataset("synthetic", "test", num_samples=200, image_size=8, seed=1)
    weight = torch.zeros(
        10, 3 * 8 * 8, requires_grad=True
    )  # plain gradient descent: torch.optim is slow to import
    bias = torch.zeros(10, requires_grad=True)
    loader = create_loader(train, batch_size=32, train=True, seed=0, augment={"flip": True})
    for epoch in range(3):
        loader.set_epoch(epoch)
        for x, y in loader:
            torch.nn.functional.cross_entropy(x.flatten(1) @ weight.T + bias, y).backward()
            with torch.no_grad():
                for p in (weight, bias):
                    p -= 0.05 * p.grad
                    p.grad = None
    x, y = next(iter(create_loader(test, batch_size=200, train=False, seed=0)))
    with torch.no_grad():
        accuracy = ((x.flatten(1) @ weight.T + bias).argmax(1) == y).float().mean().item()
    assert accuracy > 0.8


def test_different_epochs_different_order():
    loader = create_loader(_indexed_dataset(40), batch_size=8, train=True, seed=0)
    loader.set_epoch(0)
    first = _ids(loader)
    loader.set_epoch(1)
    second = _ids(loader)
    assert sorted(first) == sorted(second) == list(range(40)) and first != second


def test_global_rng_untouched():
    ds = create_dataset("synthetic", "train", num_samples=64, image_size=8)
    state = torch.get_rng_state()
    loader = create_loader(ds, batch_size=16, train=True, seed=0, augment={"pad": 4, "flip": True})
    for epoch in range(2):
        loader.set_epoch(epoch)
        for _ in loader:
            pass
    assert torch.equal(torch.get_rng_state(), state)


def test_train_shards_disjoint_and_covering_up_to_padding():
    n, world = 21, 2
    shards = []
    for rank in range(world):
        loader = create_loader(
            _indexed_dataset(n),
            batch_size=4,
            train=True,
            seed=1,
            rank=rank,
            world_size=world,
            drop_last=False,
        )
        loader.set_epoch(2)
        assert loader.num_samples == 11 and len(loader) == 3
        shards.append(_ids(loader))
    assert len(shards[0]) == len(shards[1]) == 11
    together = shards[0] + shards[1]
    assert set(together) == set(range(n))  # every sample is seen
    assert len(together) - len(set(together)) == 1  # one repeat pads 21 up to 22
    idx0, _ = shard_indices(n, seed=1, epoch=2, train=True, rank=0, world_size=2)
    idx1, _ = shard_indices(n, seed=1, epoch=2, train=True, rank=1, world_size=2)
    # the padding is position 21 of the padded permutation, i.e. rank 1's last sample (a repeat of position 0)
    assert set(idx0.tolist()).isdisjoint(idx1[:-1].tolist()) and idx1[-1] == idx0[0]


def test_eval_shards_count_each_sample_exactly_once():
    n, world = 23, 3
    seen = []
    for rank in range(world):
        loader = create_loader(
            _indexed_dataset(n), batch_size=4, train=False, seed=0, rank=rank, world_size=world
        )
        assert loader.num_samples == len(range(rank, n, world))
        seen += _ids(loader)
    assert sorted(seen) == list(range(n))
    single = create_loader(_indexed_dataset(n), batch_size=5, train=False, seed=0)
    assert _ids(single) == list(range(n)) and len(single) == 5  # in order, the last batch kept


def test_eval_ignores_augmentation():
    ds = _indexed_dataset(8)
    plain = create_loader(ds, batch_size=8, train=False, seed=0)
    augmented = create_loader(ds, batch_size=8, train=False, seed=0, augment={"pad": 4, "flip": True})
    assert torch.equal(next(iter(plain))[0], next(iter(augmented))[0])


def test_drop_last_and_argument_checks():
    ds = _indexed_dataset(10)
    assert len(create_loader(ds, batch_size=4, train=True, seed=0)) == 2  # train drops the ragged batch
    assert len(create_loader(ds, batch_size=4, train=True, seed=0, drop_last=False)) == 3
    with pytest.raises(ValueError, match=r"drop_last=True with train=False would leave samples out"):
        create_loader(ds, batch_size=4, train=False, seed=0, drop_last=True)
    with pytest.raises(ValueError, match=r"rank must lie in \[0, world_size=2\), got 2"):
        create_loader(ds, batch_size=4, train=True, seed=0, rank=2, world_size=2)
    with pytest.raises(ValueError, match=r"batch_size must be >= 1, got 0"):
        create_loader(ds, batch_size=0, train=True, seed=0)
    with pytest.raises(ValueError, match=r"batch_size=16 is larger than this rank's 10 samples"):
        create_loader(ds, batch_size=16, train=True, seed=0)
    with pytest.raises(ValueError, match=r"augment keys \['size'\] do not apply to in-memory datasets"):
        create_loader(ds, batch_size=4, train=True, seed=0, augment={"size": 224})
    with pytest.raises(ValueError, match=r"epoch must be >= 0, got -1"):
        create_loader(ds, batch_size=4, train=True, seed=0).set_epoch(-1)


# ---------------------------------------------------------------------------------------- image folders
@pytest.fixture
def folder(tmp_path):
    fmt.write_imagefolder(tmp_path, "train", per_class=4, size=(24, 18))
    return create_dataset("imagefolder", "train", root=tmp_path)


def test_folder_loader_train_batches(folder):
    aug = {"size": 16, "scale": (0.5, 1.0), "flip": True}
    loader = create_loader(folder, batch_size=4, train=True, seed=0, augment=aug)
    state = torch.get_rng_state()
    batches = _batches(loader, 0)
    assert torch.equal(torch.get_rng_state(), state)
    assert len(batches) == len(loader) == 3
    x, y = batches[0]
    assert x.shape == (4, 3, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.int64
    # solid-colour images: each pixel, un-normalised, is its class's colour
    mean, std = torch.tensor(folder.mean).view(3, 1, 1), torch.tensor(folder.std).view(3, 1, 1)
    colours = torch.eye(3)  # cat red, dog green, zebra blue
    for image, label in zip(x, y, strict=True):
        torch.testing.assert_close((image * std + mean)[:, 5, 5], colours[label], atol=1e-5, rtol=0)


@pytest.mark.parametrize("train", [True, False])
def test_folder_workers_give_the_same_batches(folder, train):
    aug = {"size": 12, "resize": 14, "flip": True}
    batches = {}
    for workers in (0, 2):
        loader = create_loader(folder, batch_size=5, train=train, seed=3, augment=aug, num_workers=workers)
        batches[workers] = _batches(loader, 1)
    assert len(batches[0]) == (2 if train else 3)
    for (x0, y0), (x2, y2) in zip(batches[0], batches[2], strict=True):
        assert torch.equal(x0, x2) and torch.equal(y0, y2)


def test_folder_eval_is_resize_center_crop(folder):
    loader = create_loader(folder, batch_size=12, train=False, seed=0, augment={"size": 8, "resize": 10})
    x, y = next(iter(loader))
    assert x.shape == (12, 3, 8, 8) and y.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    with pytest.raises(ValueError, match=r"augment keys \['pad'\] do not apply to image folders"):
        create_loader(folder, batch_size=4, train=True, seed=0, augment={"pad": 4})
