"""Scenes of items on canvases: labels that agree with the pixels, determinism, the overlap bound."""

from __future__ import annotations

import pytest
import torch

from plugattn.data.canvas import CanvasDataset, collate_scenes
from plugattn.data.records import ArrayDataset


def squares(n: int = 20, side: int = 28, classes: int = 3) -> ArrayDataset:
    """Items that are bright squares with a dark 4-pixel frame, so an item's pixels are known."""
    images = torch.zeros(n, 1, side, side, dtype=torch.uint8)
    images[:, :, 4:-4, 4:-4] = 200
    return ArrayDataset(images, torch.arange(n) % classes, [f"c{k}" for k in range(classes)], (0.5,), (0.5,))


@pytest.fixture(scope="module")
def scenes() -> CanvasDataset:
    return CanvasDataset(squares(), 40, size=64, objects=(1, 5), scale=(8, 30), seed=3)


def test_a_scene_is_its_seed_and_index_alone(scenes):
    again = CanvasDataset(squares(), 40, size=64, objects=(1, 5), scale=(8, 30), seed=3)
    for i in (7, 0, 39, 7):
        a, b = scenes[i], again[i]
        torch.testing.assert_close(a[0], b[0], rtol=0, atol=0)
        for key in a[1]:
            torch.testing.assert_close(a[1][key], b[1][key], rtol=0, atol=0)
    other = CanvasDataset(squares(), 40, size=64, objects=(1, 5), scale=(8, 30), seed=4)
    assert not torch.equal(scenes[7][0], other[7][0])


def test_shapes_dtypes_and_ranges(scenes):
    for i in range(len(scenes)):
        image, t = scenes[i]
        assert image.shape == (1, 64, 64) and image.dtype == torch.float32
        assert 0 <= image.min() and image.max() <= 1
        n = len(t["labels"])
        assert t["boxes"].shape == (n, 4) and t["area"].shape == (n,)
        assert t["labels"].dtype == torch.int64 and ((t["labels"] >= 1) & (t["labels"] <= 3)).all()
        assert t["semantic"].shape == (64, 64) and t["semantic"].dtype == torch.int64
        assert 0 <= t["semantic"].min() and t["semantic"].max() <= 3
    assert scenes.classes == ["background", "c0", "c1", "c2"] and scenes.num_classes == 4


def test_boxes_areas_and_the_semantic_map_describe_the_same_pixels(scenes):
    """A box is tight around pixels of its class; the areas add up to the labelled pixels; every pixel
    labelled as an item is bright (an item's own pixel) and every background pixel is canvas noise."""
    for i in range(len(scenes)):
        image, t = scenes[i]
        semantic = t["semantic"]
        assert t["area"].sum() == (semantic > 0).sum()
        for (x1, y1, x2, y2), label in zip(t["boxes"].long().tolist(), t["labels"].tolist(), strict=True):
            inside = semantic[y1:y2, x1:x2] == label
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
        assert (image[0][semantic > 0] > 0.1).all()
        assert (image[0][semantic == 0] <= 0.1 + 1e-6).all()


def test_most_objects_are_small_with_the_default_scales():
    items = squares(50)
    data = CanvasDataset(items, 30, seed=0)  # 128² canvases, sides 10..48
    areas = torch.cat([data[i][1]["area"] for i in range(len(data))])
    assert (areas < 32**2).float().mean() > 0.5
    counts = [len(data[i][1]["labels"]) for i in range(len(data))]
    assert min(counts) >= 1 and max(counts) <= 6


def test_overlap_stays_under_the_bound():
    """With no overlap allowed no two boxes intersect; items are never hidden then."""
    data = CanvasDataset(squares(), 30, size=64, objects=(4, 6), scale=(8, 20), max_overlap=1e-6, seed=1)
    for i in range(len(data)):
        boxes = data[i][1]["boxes"]
        for a in range(len(boxes)):
            for b in range(a + 1, len(boxes)):
                dx = min(boxes[a, 2], boxes[b, 2]) - max(boxes[a, 0], boxes[b, 0])
                dy = min(boxes[a, 3], boxes[b, 3]) - max(boxes[a, 1], boxes[b, 1])
                assert dx <= 0 or dy <= 0


def test_collate_stacks_images_and_keeps_targets(scenes):
    images, targets = collate_scenes([scenes[0], scenes[1], scenes[2]])
    assert images.shape == (3, 1, 64, 64) and len(targets) == 3
    torch.testing.assert_close(images[1], scenes[1][0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"length": 0}, "length"),
        ({"size": 4}, "size"),
        ({"objects": (3, 2)}, "objects"),
        ({"objects": (0, 2)}, "objects"),
        ({"scale": (8, 200)}, "scale"),
        ({"scale": (8.0, 20)}, "scale"),
        ({"max_overlap": 0.0}, "max_overlap"),
        ({"threshold": 1.0}, "threshold"),
        ({"background": -0.1}, "background"),
        ({"aspect": 0.5}, "aspect"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, match):
    args = {"length": 4, "size": 64, **kwargs}
    with pytest.raises(ValueError, match=match):
        CanvasDataset(squares(), **args)


def test_bad_items_and_indices():
    with pytest.raises(ValueError, match="items"):
        CanvasDataset(torch.zeros(3, 1, 8, 8), 4)
    data = CanvasDataset(squares(), 4, size=64)
    with pytest.raises(IndexError, match="index"):
        data[4]
    with pytest.raises(IndexError, match="index"):
        data[1.0]
