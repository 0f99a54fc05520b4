"""plugattn backbones in torchvision's detectors (`plugattn.detection_model`), COCO mAP through
pycocotools against answers worked by hand, and `plugattn detect` end to end on Fashion-MNIST files."""

from __future__ import annotations

import json
import math

import pytest
import torch

import plugattn
from plugattn.cli import main
from plugattn.engine.dense import coco_metrics, evaluate_detection, train_dense_epoch
from tests.data.formats import write_fashion_mnist
from tests.interop._env import require

require("torchvision")
require("pycocotools")


@pytest.mark.parametrize(
    ("name", "kwargs", "levels", "strides"),
    [
        ("resnet18", {}, [0, 1, 2, 3], [4, 8, 16, 32, 64]),
        ("resnet50", {}, [0, 1, 2, 3], [4, 8, 16, 32, 64]),
        ("mobilenet_v2", {}, [1, 2, 3, 4], [4, 8, 16, 32, 64]),  # its stride-2 map (index 0) left out
        ("repvgg_a0", {}, [1, 2, 3, 4], [4, 8, 16, 32, 64]),
        ("swin_t", {"img_size": 224}, [0, 1, 2, 3], [4, 8, 16, 32, 64]),
    ],
)
def test_backbone_returns_fpn_maps_at_its_strides(name, kwargs, levels, strides):
    size = 224 if name == "swin_t" else 128
    backbone = plugattn.detection_backbone(name, attention="scsa", fpn_channels=16, **kwargs).eval()
    assert backbone.levels == levels and backbone.reductions == strides and backbone.out_channels == 16
    with torch.no_grad():
        maps = backbone(torch.randn(1, 3, size, size))
    assert list(maps) == ["0", "1", "2", "3", "pool"]
    assert [tuple(m.shape) for m in maps.values()] == [(1, 16, -(-size // s), -(-size // s)) for s in strides]


def test_p6p7_levels_and_chosen_levels():
    backbone = plugattn.detection_backbone("resnet18", levels=[1, 2, 3], extra="p6p7", fpn_channels=8)
    assert backbone.reductions == [8, 16, 32, 64, 128]
    assert list(backbone(torch.randn(1, 3, 128, 128))) == ["0", "1", "2", "p6", "p7"]


def scenes(n: int = 2, size: int = 128):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 1, size, size, generator=g)
    target = {
        "boxes": torch.tensor([[10.0, 12.0, 40.0, 44.0], [70.0, 20.0, 90.0, 36.0]]),
        "labels": torch.tensor([1, 2]),
        "area": torch.tensor([700.0, 200.0]),
    }
    return images, [dict(target) for _ in range(n)]


@pytest.mark.parametrize("kind", ["faster_rcnn", "retinanet", "fcos"])
@pytest.mark.parametrize("attention", ["ham", "scsa"])
def test_every_detector_trains_a_step_through_the_attention(kind, attention):
    torch.manual_seed(0)
    model = plugattn.detection_model(kind, "resnet18", num_classes=3, attention=attention, in_chans=1,
                                     fpn_channels=32, image_size=128, image_mean=[0.1], image_std=[0.2],
                                     box_head_size=32)  # fmt: skip
    images, targets = scenes()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if ".attn." in n}
    assert before
    stats = train_dense_epoch(model, [(images, targets)], optimizer, task="detection")
    assert stats["images"] == 2 and math.isfinite(stats["loss"])
    after = dict(model.named_parameters())
    assert any(not torch.equal(before[n], after[n]) for n in before)  # the attention learned
    model.eval()
    with torch.no_grad():
        out = model(list(images))
    assert len(out) == 2 and {"boxes", "labels", "scores"} <= set(out[0])


def test_anchors_are_twice_each_levels_stride_unless_given():
    model = plugattn.detection_model("faster_rcnn", num_classes=3, fpn_channels=8, image_size=128)
    assert model.rpn.anchor_generator.sizes == ((8,), (16,), (32,), (64,), (128,))
    assert model.transform.min_size == (128,) and model.transform.max_size == 128
    assert model.transform.image_mean == [0.485, 0.456, 0.406]  # ImageNet's for three channels
    model = plugattn.detection_model(
        "retinanet", num_classes=3, fpn_channels=8, anchor_sizes=[16, 32, 64, 128, 256, 512]
    )  # P2-P5, P6, P7; fmt: skip
    assert model.anchor_generator.sizes[0] == (16, 20, 25)  # 16 * 2^(k/3), truncated
    assert model.anchor_generator.aspect_ratios[0] == (0.5, 1.0, 2.0)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"kind": "yolo"}, "kind"),
        ({"in_chans": 1}, "image_mean"),  # no ImageNet statistics for one channel
        ({"in_chans": 1, "image_mean": [0.1], "image_std": [0.2, 0.3]}, "image_std"),
        ({"anchor_sizes": [8, 16]}, "anchor_sizes"),
        ({"anchor_sizes": [8, 16, 32, 64, 0]}, "anchor_sizes"),
        ({"num_classes": 1}, "num_classes"),
        ({"image_size": 8}, "image_size"),
        ({"kind": "fcos", "fpn_channels": 48}, "fpn_channels"),
        ({"backbone_kwargs": {"levels": [3, 1]}}, "levels"),
    ],
)
def test_bad_arguments_are_named(kwargs, named):
    kwargs = {"num_classes": 3, "fpn_channels": 8, **kwargs}
    with pytest.raises(ValueError, match=named):
        plugattn.detection_model(**kwargs)


def test_bad_backbone_arguments_are_named():
    with pytest.raises(ValueError, match="extra"):
        plugattn.detection_backbone("resnet18", extra="p6")
    with pytest.raises(ValueError, match="levels"):
        plugattn.detection_backbone("resnet18", levels=[0, 7])


def box(*xyxy):
    return torch.tensor([list(map(float, xyxy))])


def truth(boxes, labels, areas):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels),
            "area": torch.tensor(areas, dtype=torch.float32)}  # fmt: skip


def detected(boxes, labels, scores):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), "labels": torch.tensor(labels),
            "scores": torch.tensor(scores)}  # fmt: skip


def test_coco_metrics_of_perfect_boxes_are_one():
    truths = [truth([[0, 0, 10, 10], [20, 20, 80, 80]], [1, 2], [100, 3600])]
    m = coco_metrics(truths, [detected([[0, 0, 10, 10], [20, 20, 80, 80]], [1, 2], [0.9, 0.8])], 3)
    assert [m["map"], m["map_50"], m["map_75"]] == pytest.approx([1.0, 1.0, 1.0])
    assert m["map_small"] == pytest.approx(1.0) and m["map_medium"] == pytest.approx(1.0)
    assert math.isnan(m["map_large"])  # no object of 96² px or more: pycocotools' -1


def test_coco_metrics_of_a_box_at_iou_062():
    # truth 10×10, detection 10×6.2 inside it: IoU 0.62 matches at thresholds 0.50, 0.55, 0.60 of ten
    m = coco_metrics([truth([[0, 0, 10, 10]], [1], [100])], [detected([[0, 0, 10, 6.2]], [1], [0.9])], 2)
    assert m["map"] == pytest.approx(0.3)
    assert m["map_50"] == pytest.approx(1.0) and m["map_75"] == pytest.approx(0.0)
    assert m["map_small"] == pytest.approx(0.3) and math.isnan(m["map_medium"])


def test_coco_metrics_average_over_classes_and_score_nothing_as_zero():
    truths = [truth([[0, 0, 10, 10], [30, 30, 40, 40]], [1, 2], [100, 100])]
    # class 1 found, class 2 missed, and a box of class 3 where no class-3 object exists (no AP for it)
    m = coco_metrics(truths, [detected([[0, 0, 10, 10], [50, 50, 60, 60]], [1, 3], [0.9, 0.5])], 4)
    assert m["map"] == pytest.approx(0.5)
    empty = coco_metrics(truths, [detected([], [], [])], 4)
    assert all(v == 0.0 for v in empty.values())


def test_evaluate_detection_runs_the_model_in_eval_mode():
    model = plugattn.detection_model("fcos", num_classes=3, in_chans=1, fpn_channels=32, image_size=128,
                                     image_mean=[0.1], image_std=[0.2])  # fmt: skip
    model.train()
    m = evaluate_detection(model, [scenes()], 3)
    assert not model.training and set(m) >= {"map", "map_50", "map_small"}


def refuse_nan(constant: str):
    raise AssertionError(f"{constant} in a JSON file: JSON has no NaN")


def test_detect_cli_writes_every_cell_and_the_summary(tmp_path):
    write_fashion_mnist(tmp_path / "fm", n_train=30, n_test=10)
    out = tmp_path / "grid"
    args = ["detect", "--attention", "none,ham", "--seeds", "1", "--data-dir", str(tmp_path / "fm"),
            "--out", str(out), "--epochs", "1", "--train-scenes", "8", "--test-scenes", "4", "--size", "64",
            "--batch-size", "4"]  # fmt: skip
    assert main(args) == 0
    cell = json.loads((out / "ham-seed0.json").read_text(), parse_constant=refuse_nan)
    assert {"map", "map_50", "map_small"} <= set(cell["metrics"])
    assert cell["metrics"]["map_large"] is None  # no object of 96² px on a 64² canvas: JSON null, not NaN
    summary = json.loads((out / "summary.json").read_text())
    assert summary["recipe"]["task"] == "detection" and set(summary["modules"]) == {"none", "ham"}
    assert "difference_map" in summary["modules"]["ham"]
    text = (out / "summary.md").read_text()
    assert "faster_rcnn over resnet18" in text and "map_small" in text


def test_detect_cli_takes_the_detector_and_the_position(tmp_path):
    write_fashion_mnist(tmp_path / "fm", n_train=30, n_test=10)
    out = tmp_path / "grid"
    args = ["detect", "--detector", "retinanet", "--attention", "scsa", "--position", "end", "--seeds", "1",
            "--data-dir", str(tmp_path / "fm"), "--out", str(out), "--epochs", "1", "--train-scenes", "4",
            "--test-scenes", "2", "--size", "64", "--batch-size", "4"]  # fmt: skip
    assert main(args) == 0
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["detector"] == "retinanet" and recipe["position"] == "end"
    title = (out / "summary.md").read_text().splitlines()[0]
    assert title == "# detection: retinanet over resnet18 (attention at end), 1 seed"
    assert (out / "scsa-seed0.png").stat().st_size > 0


def test_the_recipe_sizes_faster_rcnns_sampling_and_shares_weights_across_modules():
    from plugattn.runs.dense import DenseRecipe, build_dense_model

    recipe = DenseRecipe("detection", size=64, rois_per_image=32, proposals=100)
    plain, ham = (build_dense_model(recipe, a, 3, 11, 1) for a in ("none", "ham"))
    assert ham.roi_heads.fg_bg_sampler.batch_size_per_image == 32
    assert ham.rpn._post_nms_top_n == {"training": 100, "testing": 100}
    assert ham.rpn._pre_nms_top_n == {"training": 200, "testing": 200}
    theirs = ham.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in plain.state_dict().items())  # only the attention differs
