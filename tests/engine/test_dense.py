"""Dense-task metrics against answers worked by hand, and the training loop on a tiny segmenter."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from plugattn.engine.dense import evaluate_segmentation, segmentation_metrics, train_dense_epoch


def test_segmentation_metrics_by_hand():
    # truth rows, predicted columns: class 0 has 5 right, 1 taken for class 1; class 1 has 3 right,
    # 2 taken for class 0; class 2 never occurs and is never predicted.
    confusion = np.array([[5, 1, 0], [2, 3, 0], [0, 0, 0]])
    m = segmentation_metrics(confusion)
    iou0 = 5 / (5 + 1 + 2)  # TP / (TP + FN + FP)
    iou1 = 3 / (3 + 2 + 1)
    assert m["iou"][:2] == pytest.approx([iou0, iou1])
    assert math.isnan(m["iou"][2])
    assert m["miou"] == pytest.approx((iou0 + iou1) / 2)
    assert m["miou_foreground"] == pytest.approx(iou1)
    assert m["pixel_accuracy"] == pytest.approx(8 / 11)


def test_a_class_only_predicted_counts_with_iou_zero():
    m = segmentation_metrics(np.array([[4, 1], [0, 0]]))
    assert m["iou"] == pytest.approx([0.8, 0.0])
    assert m["miou"] == pytest.approx(0.4)


def test_segmentation_metrics_reject_what_is_not_a_confusion_matrix():
    with pytest.raises(ValueError, match="confusion"):
        segmentation_metrics(np.ones((2, 3)))
    with pytest.raises(ValueError, match="confusion"):
        segmentation_metrics(-np.ones((2, 2)))


class Oracle(nn.Module):
    """Logits that pick the class stored in the image's first channel."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(x[:, 0].long(), self.num_classes).permute(0, 3, 1, 2).float()


def test_evaluate_segmentation_counts_every_pixel():
    truth = torch.tensor([[[0, 1], [2, 2]]])
    wrong = torch.tensor([[[0, 1], [1, 2]]]).float()[:, None]  # one of four pixels wrong: 2 taken for 1
    m = evaluate_segmentation(Oracle(3), [(wrong, [{"semantic": truth[0]}])], 3)
    assert m["pixel_accuracy"] == pytest.approx(0.75)
    assert m["iou"] == pytest.approx([1.0, 0.5, 0.5])


def test_train_dense_epoch_lowers_a_segmentation_loss():
    torch.manual_seed(0)
    model = nn.Conv2d(1, 2, 1)  # a pixel's class is whether it is brighter than 0.5: one 1x1 conv learns it
    images = torch.rand(8, 1, 16, 16)
    targets = [{"semantic": (img[0] > 0.5).long()} for img in images]
    batches = [(images[:4], targets[:4]), (images[4:], targets[4:])]
    opt = torch.optim.Adam(model.parameters(), lr=0.2)
    first = train_dense_epoch(model, batches, opt, task="segmentation")
    for _ in range(30):
        last = train_dense_epoch(model, batches, opt, task="segmentation")
    assert first["images"] == 8 and last["loss"] < 0.5 * first["loss"]


def test_train_dense_epoch_refuses_a_non_finite_loss_and_an_unknown_task():
    model = nn.Conv2d(1, 2, 1)
    images = torch.full((2, 1, 4, 4), float("nan"))
    batches = [(images, [{"semantic": torch.zeros(4, 4, dtype=torch.long)}] * 2)]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(FloatingPointError, match="segmentation loss"):
        train_dense_epoch(model, batches, opt, task="segmentation")
    with pytest.raises(ValueError, match="task"):
        train_dense_epoch(model, batches, opt, task="classification")
