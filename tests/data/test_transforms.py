"""Batch augmentation (vectorised crop and flip, normalisation) and the per-image folder transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from plugattn.data import BatchAugment, RandomResizedCropFlip, ResizeCenterCrop

MEAN, STD = (0.5, 0.25, 0.125), (0.5, 0.25, 0.2)


def _batch(b=6, c=3, h=5, w=7, seed=0):
    return torch.randint(
        0, 256, (b, c, h, w), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8
    )


def _reference(images, pad, dy, dx, flips):
    """Per-image loop: zero-pad, crop H x W at (dy, dx), then mirror left-right."""
    out = []
    for img, y, x, f in zip(images, dy.tolist(), dx.tolist(), flips.tolist(), strict=True):
        padded = torch.nn.functional.pad(img, (pad, pad, pad, pad))
        crop = padded[:, y : y + img.shape[1], x : x + img.shape[2]]
        out.append(crop.flip(-1) if f else crop)
    return torch.stack(out)


@pytest.mark.parametrize("flip", [False, True])
def test_vectorised_crop_equals_per_image_loop(flip):
    aug = BatchAugment(pad=2, flip=flip, mean=MEAN, std=STD)
    images = _batch(b=32)
    dy, dx, flips = aug.sample_params(32, torch.Generator().manual_seed(1))
    assert dy.min() >= 0 and dy.max() <= 4 and len(set(dx.tolist())) > 1  # offsets differ per image
    assert flips.any() == flip and (not flip or not flips.all())
    assert torch.equal(aug.apply(images, dy, dx, flips), _reference(images, 2, dy, dx, flips))
    # __call__ draws the same parameters from the same generator, then normalises
    out = aug(images, torch.Generator().manual_seed(1))
    expected = (
        _reference(images, 2, dy, dx, flips).float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)
    ) / torch.tensor(STD).view(1, 3, 1, 1)
    torch.testing.assert_close(out, expected)


def test_known_offsets_and_flip():
    aug = BatchAugment(pad=1, flip=True, mean=(0.0,), std=(1.0,))
    img = torch.arange(1, 10, dtype=torch.uint8).view(1, 1, 3, 3)  # [[1,2,3],[4,5,6],[7,8,9]]
    two = img.repeat(2, 1, 1, 1)
    out = aug.apply(two, torch.tensor([0, 2]), torch.tensor([0, 1]), torch.tensor([False, True]))
    # image 0: shifted down-right by one (zeros enter at the top and left)
    assert out[0, 0].tolist() == [[0, 0, 0], [0, 1, 2], [0, 4, 5]]
    # image 1: shifted up by one, then mirrored
    assert out[1, 0].tolist() == [[6, 5, 4], [9, 8, 7], [0, 0, 0]]
    # a pure flip (pad 0) mirrors columns
    flipper = BatchAugment(flip=True, mean=(0.0,), std=(1.0,))
    z = torch.zeros(1, dtype=torch.int64)
    assert torch.equal(flipper.apply(img, z, z, torch.tensor([True])), img.flip(-1))


def test_flip_rate_is_about_half():
    aug = BatchAugment(flip=True, mean=MEAN, std=STD)
    _, _, flips = aug.sample_params(4000, torch.Generator().manual_seed(0))
    assert 0.45 < flips.float().mean() < 0.55


def test_normalisation_and_eval_transform_needs_no_generator():
    aug = BatchAugment(mean=MEAN, std=STD)
    images = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    out = aug(images)
    assert out.dtype == torch.float32 and out.shape == (2, 3, 4, 4) and out.is_contiguous()
    torch.testing.assert_close(
        out[0, :, 0, 0], torch.tensor([(1 - 0.5) / 0.5, (1 - 0.25) / 0.25, (1 - 0.125) / 0.2])
    )
    assert not aug.random


def test_randomness_only_from_the_generator():
    aug = BatchAugment(pad=4, flip=True, mean=MEAN, std=STD)
    images = _batch(b=16, h=8, w=8)
    state = torch.get_rng_state()
    a = aug(images, torch.Generator().manual_seed(5))
    torch.manual_seed(123)  # global RNG changes nothing
    b = aug(images, torch.Generator().manual_seed(5))
    torch.set_rng_state(state)
    assert torch.equal(a, b)
    assert not torch.equal(a, aug(images, torch.Generator().manual_seed(6)))
    with pytest.raises(ValueError, match=r"generator is required when pad > 0 or flip=True"):
        aug(images)


def test_batch_augment_validates():
    with pytest.raises(ValueError, match=r"pad must be >= 0, got -1"):
        BatchAugment(pad=-1, mean=MEAN, std=STD)
    with pytest.raises(ValueError, match=r"mean and std must have the same length"):
        BatchAugment(mean=MEAN, std=(1.0,))
    with pytest.raises(ValueError, match=r"std must be positive"):
        BatchAugment(mean=(0.0,), std=(0.0,))
    aug = BatchAugment(mean=MEAN, std=STD)
    with pytest.raises(ValueError, match=r"images must be a uint8 tensor \(B, C, H, W\), got torch.float32"):
        aug(torch.zeros(1, 3, 2, 2))
    with pytest.raises(ValueError, match=r"images have 1 channels but mean/std have 3"):
        aug(torch.zeros(1, 1, 2, 2, dtype=torch.uint8))


# ---------------------------------------------------------------------------------------- folder transforms
def _pil(width=40, height=30):
    image = pytest.importorskip("PIL.Image")  # Pillow is an optional dependency

    array = np.zeros((height, width, 3), np.uint8)
    array[:, : width // 2] = (255, 0, 0)  # left half red, right half blue
    array[:, width // 2 :] = (0, 0, 255)
    return image.fromarray(array)


def test_resize_center_crop():
    t = ResizeCenterCrop(size=16, resize=20)
    out = t(_pil(40, 30))  # shorter side 30 -> 20: 27 x 20, then the centre 16 x 16
    assert out.shape == (3, 16, 16) and out.dtype == torch.uint8
    assert out[0, 8, 0] == 255 and out[2, 8, 15] == 255  # red on the left, blue on the right
    assert torch.equal(out, t(_pil(40, 30), seed=99))  # nothing random
    with pytest.raises(ValueError, match=r"resize must be >= 16, got 8"):
        ResizeCenterCrop(size=16, resize=8)


def test_random_resized_crop_flip_is_seeded():
    t = RandomResizedCropFlip(size=12, flip=True)
    img = _pil()
    outs = [t(img, seed) for seed in range(40)]
    assert all(o.shape == (3, 12, 12) and o.dtype == torch.uint8 for o in outs)
    assert torch.equal(t(img, 7), outs[7])  # same seed, same crop
    assert len({o.numpy().tobytes() for o in outs}) > 10  # different seeds, different crops
    rng = np.random.default_rng(0)
    for _ in range(200):
        left, top, right, bottom = t.crop_box(40, 30, rng)
        assert 0 <= left < right <= 40 and 0 <= top < bottom <= 30
    # scale (1, 1) and ratio fixed at the image's: the whole image, so only the flip varies
    whole = RandomResizedCropFlip(size=12, scale=(1.0, 1.0), ratio=(4 / 3, 4 / 3), flip=True)
    seen = {whole(img, s)[0, 6, 0].item() for s in range(20)}
    assert seen == {0, 255}  # red on the left unflipped, blue when flipped
    with pytest.raises(ValueError, match=r"scale\[1\] must lie in \[0.5, 1.0\], got 2"):
        RandomResizedCropFlip(scale=(0.5, 2))
