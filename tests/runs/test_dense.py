"""`plugattn segment` end to end on a tiny Fashion-MNIST in the real IDX format: files, pairing, resume.

(`plugattn detect` needs torchvision; its run is in tests/interop/test_detection.py.)
"""

from __future__ import annotations

import json

import pytest
import torch

from plugattn.cli import main
from plugattn.runs.dense import DenseRecipe, build_dense_model, summarise_dense
from tests.data.formats import write_fashion_mnist

TINY = ["--epochs", "1", "--train-scenes", "8", "--test-scenes", "4", "--size", "64", "--batch-size", "4"]


@pytest.fixture
def fmnist(tmp_path):
    write_fashion_mnist(tmp_path / "fm", n_train=30, n_test=10)
    return tmp_path / "fm"


def test_segment_writes_every_cell_and_the_summary_then_resumes(fmnist, tmp_path, capsys):
    out = tmp_path / "grid"
    args = ["segment", "--attention", "none,se", "--seeds", "2", "--data-dir", str(fmnist), "--out", str(out)]
    assert main(args + TINY) == 0
    cells = sorted(p.name for p in out.glob("*-seed*.json"))
    assert cells == ["none-seed0.json", "none-seed1.json", "se-seed0.json", "se-seed1.json"]
    summary = json.loads((out / "summary.json").read_text())
    se = summary["modules"]["se"]
    assert se["miou"]["n"] == 2 and se["difference_miou"]["seeds"] == [0, 1]
    none = {s: json.loads((out / f"none-seed{s}.json").read_text())["metrics"]["miou"] for s in (0, 1)}
    ses = {s: json.loads((out / f"se-seed{s}.json").read_text())["metrics"]["miou"] for s in (0, 1)}
    assert se["difference_miou"]["mean"] == pytest.approx(sum(ses[s] - none[s] for s in (0, 1)) / 2)
    assert "| se | 2 |" in (out / "summary.md").read_text()
    assert len((out / "results.csv").read_text().splitlines()) == 5
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*-seed*.json")}
    capsys.readouterr()
    assert main(args + TINY) == 0  # every cell is there: nothing is trained again
    assert "epoch 1/1" not in capsys.readouterr().out
    assert stamps == {p.name: p.stat().st_mtime_ns for p in out.glob("*-seed*.json")}


def test_another_recipe_in_the_same_directory_is_refused(fmnist, tmp_path, capsys):
    out = tmp_path / "grid"
    base = ["segment", "--attention", "none", "--seeds", "1", "--data-dir", str(fmnist), "--out", str(out)]
    assert main(base + TINY) == 0
    before = (out / "none-seed0.json").read_bytes()
    capsys.readouterr()
    changed = [a if a != "8" else "12" for a in TINY]  # --train-scenes 12
    assert main(base + changed) == 2
    assert "train_scenes" in capsys.readouterr().err
    assert (out / "none-seed0.json").read_bytes() == before


def test_cells_of_a_seed_share_the_backbone_and_head_weights():
    recipe = DenseRecipe("segmentation", size=64)
    plain = build_dense_model(recipe, "none", 3, num_classes=11, in_chans=1).state_dict()
    ham = build_dense_model(recipe, "ham", 3, num_classes=11, in_chans=1).state_dict()
    other_seed = build_dense_model(recipe, "none", 4, num_classes=11, in_chans=1).state_dict()
    assert set(plain) < set(ham)
    for key, value in plain.items():
        torch.testing.assert_close(ham[key], value, rtol=0, atol=0)
    assert not torch.equal(other_seed["classifier.weight"], plain["classifier.weight"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"task": "classification"}, "task"),
        ({"attentions": ()}, "attentions"),
        ({"attentions": ("se", "se")}, "attentions"),
        ({"seeds": (0, 0)}, "seeds"),
        ({"seeds": (-1,)}, "seeds"),
        ({"epochs": 0}, "epochs"),
        ({"lr": 0.0}, "lr"),
        ({"size": 16}, "size"),
    ],
)
def test_bad_recipes_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DenseRecipe(**{"task": "segmentation", **kwargs})


def test_summary_of_a_grid_with_no_baseline_cells(tmp_path):
    recipe = DenseRecipe("segmentation", attentions=("se",), seeds=(0,))
    record = {"attention": "se", "seed": 0, "params": 5, "train_seconds": 1.0,
              "metrics": {"miou": 0.5, "miou_foreground": 0.25, "pixel_accuracy": 0.75}}  # fmt: skip
    (tmp_path / "se-seed0.json").write_text(json.dumps(record))
    summary = summarise_dense(tmp_path, recipe)
    assert summary["modules"]["se"]["miou"]["mean"] == 0.5
    assert "difference_miou" not in summary["modules"]["se"]
    assert "| se | 1 | 50.00 | 25.00 | 75.00 | 5 | 1 | – | – |" in (tmp_path / "summary.md").read_text()


def test_detect_without_torchvision_says_which_extra_before_any_work(fmnist, tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torchvision", None)  # import torchvision -> ImportError, anywhere
    out = tmp_path / "grid"
    assert main(["detect", "--seeds", "1", "--data-dir", str(fmnist), "--out", str(out), *TINY]) == 2
    err = capsys.readouterr().err
    assert "plugattn detect: error:" in err and "plugattn[detection]" in err and "bug" not in err
    assert not out.exists()  # nothing written


def test_the_recipes_position_moves_the_attention_in_the_backbone():
    import plugattn

    def places(recipe):
        model = build_dense_model(recipe, "scsa", 0, 11, 1)
        blocks = [m for m in model.modules() if isinstance(getattr(m, "attn", None), plugattn.SCSA)]
        return {b.attn_position for b in blocks}, len(blocks)

    # SCSA's own place in a basic block is before its last conv; the recipe's position moves all eight
    assert places(DenseRecipe("segmentation", size=64)) == ({"before_last_conv"}, 8)
    assert places(DenseRecipe("segmentation", size=64, position="end")) == ({"end"}, 8)
    with pytest.raises(ValueError, match="position"):
        places(DenseRecipe("segmentation", size=64, position="nowhere"))
    with pytest.raises(ValueError, match="detector"):
        DenseRecipe("detection", detector="yolo")


def test_cells_and_summary_are_strict_json_with_null_for_missing_values(fmnist, tmp_path):
    out = tmp_path / "grid"
    base = ["segment", "--attention", "none", "--seeds", "1", "--data-dir", str(fmnist), "--out", str(out)]
    assert main(base + TINY) == 0

    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    json.loads((out / "none-seed0.json").read_text(), parse_constant=refuse)
    summary = json.loads((out / "summary.json").read_text(), parse_constant=refuse)
    assert summary["modules"]["none"]["miou"]["low"] is None  # one seed: no interval
