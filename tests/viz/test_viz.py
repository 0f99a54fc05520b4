"""See: attention maps by name, their pictures, CAMs, and `plugattn viz` on real checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import plugattn
from plugattn import cli
from plugattn.engine.config import resolve_config
from plugattn.runs import train
from plugattn.viz import class_activation_maps, module_maps, one_per_stage, visualise
from plugattn.viz.figures import _overlay, _pyplot
from tests.models import lookalikes as la

PIL = pytest.importorskip("PIL.Image")
pytest.importorskip("torchcam")


def tiny(attention: str, in_chans: int = 3) -> dict:
    return {
        "data": "synthetic",
        "data_options": {"num_samples": 64, "image_size": 16, "num_classes": 3, "in_chans": in_chans},
        "model": "resnet20",
        "attention": attention,
        "epochs": 1,
        "batch_size": 16,
        "eval_batch_size": 32,
        "threads": 1,
        "augment": {"pad": 0, "flip": False},
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("viz_runs")
    made = {}
    for name, attention, chans in (("ham", "ham", 3), ("none", "none", 3), ("scsa_grey", "scsa", 1)):
        train(
            resolve_config(overrides=tiny(attention, chans)), root / name, progress=False, log=lambda *_: None
        )
        made[name] = root / name
    return made


# ---------------------------------------------------------------------------------------------- maps
def test_attention_maps_by_name_and_pattern():
    model = plugattn.create_model("resnet20", attention="scsa", num_classes=3).eval()
    x = torch.randn(2, 3, 16, 16)
    maps = plugattn.attention_maps(model, x)
    assert len(maps) == 9 * 3  # nine blocks; SCSA's spatial gate fires twice (H, then W), channel once
    h_map, w_map = maps["layer3.2.attn.spatial.gate[0]"], maps["layer3.2.attn.spatial.gate[1]"]
    assert h_map.shape == (2, 64, 4) and w_map.shape == (2, 64, 4)
    chosen = plugattn.attention_maps(model, x, names=["layer1.0.*", "*channel*"])
    assert set(chosen) == {k for k in maps if k.startswith("layer1.0.") or "channel" in k}
    torch.testing.assert_close(chosen["layer1.0.attn.channel.gate"], maps["layer1.0.attn.channel.gate"])


def test_attention_maps_errors_and_hooks_removed():
    model = plugattn.create_model("resnet20", attention="ham", num_classes=3)
    with pytest.raises(
        ValueError, match=r"names pattern 'layer9\*' matches no attention map; the maps are: layer1"
    ):
        plugattn.attention_maps(model, torch.randn(1, 3, 16, 16), names="layer9*")
    with pytest.raises(ValueError, match=r"ResNet holds no plugattn attention module"):
        plugattn.attention_maps(plugattn.create_model("resnet20"), torch.randn(1, 3, 16, 16))
    with pytest.raises(RuntimeError):  # wrong channel count for the stem: the forward raises
        plugattn.attention_maps(model, torch.randn(1, 5, 16, 16))
    assert not any(m._forward_hooks for m in model.modules())


def test_attention_maps_of_a_retrofitted_foreign_model():
    model = la.tv_resnet18(num_classes=4)
    plugattn.insert_attention(model, "cbam")
    maps = plugattn.attention_maps(model.eval(), torch.randn(1, 3, 32, 32), names="layer4.*")
    assert {k.rsplit(".", 2)[-2] + "." + k.rsplit(".", 1)[-1] for k in maps} == {
        "channel.gate",
        "spatial.gate",
    }
    assert all(k.startswith("layer4.") for k in maps)


@pytest.mark.parametrize("name", plugattn.list_attention())
def test_every_module_has_something_to_show(name):
    model = plugattn.create_model("resnet20", attention=name, num_classes=3).eval()
    logits, maps = module_maps(model, torch.randn(2, 3, 16, 16))
    assert logits.shape == (2, 3) and len(maps) == 9
    stages = one_per_stage(maps)
    assert [s.name for s in stages] == ["layer1.2.attn", "layer2.2.attn", "layer3.2.attn"]
    for stage, size, chans in zip(stages, (16, 8, 4), (16, 32, 64), strict=True):
        assert stage.spatial or stage.channel is not None or stage.note
        for heat in stage.spatial.values():
            assert heat.shape == (2, size, size) and torch.isfinite(heat).all()
        if stage.channel is not None:
            assert stage.channel.shape == (2, chans)


def test_ham_maps_are_its_two_spatial_maps():
    model = plugattn.create_model("resnet20", attention="ham", num_classes=3).eval()
    x = torch.randn(2, 3, 16, 16)
    _, maps = module_maps(model, x)
    raw = plugattn.attention_maps(model, x, names="layer2.2.attn.*")
    ham = next(m for m in maps if m.name == "layer2.2.attn")
    both = raw["layer2.2.attn.spatial.gate"]
    torch.testing.assert_close(ham.spatial["important channels"], both[:, 0])
    torch.testing.assert_close(ham.spatial["sub-important channels"], both[:, 1])
    torch.testing.assert_close(ham.channel, raw["layer2.2.attn.channel.gate"])


# ---------------------------------------------------------------------------------------------- CAMs
def test_cams_at_the_last_stage_and_errors():
    model = plugattn.create_model("resnet20", attention="ham", num_classes=3)
    logits, cams = class_activation_maps(model, torch.randn(2, 3, 16, 16), methods=["gradcam", "scorecam"])
    assert set(cams) == {"gradcam", "scorecam"}
    for cam in cams.values():
        assert cam.shape == (2, 4, 4) and cam.min() >= 0 and cam.max() <= 1 + 1e-6
    _, early = class_activation_maps(model, torch.randn(2, 3, 16, 16), methods=["gradcam"], layer="layer1")
    assert early["gradcam"].shape == (2, 16, 16)
    with pytest.raises(ValueError, match=r"layer 'layer9' is not a module of ResNet"):
        class_activation_maps(model, torch.randn(1, 3, 16, 16), layer="layer9")
    with pytest.raises(ValueError, match=r"cam must be one of .*gradcam.*got 'cam9'"):
        class_activation_maps(model, torch.randn(1, 3, 16, 16), methods=["cam9"])


# -------------------------------------------------------------------------------------------- pictures
def _png(path) -> np.ndarray:
    with PIL.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.float32)


def test_overlays_of_different_maps_differ(tmp_path):
    plt = _pyplot()
    image = torch.rand(1, 16, 16)
    left = torch.zeros(4, 4)
    left[:, :2] = 1
    pictures = []
    for k, heat in enumerate((left, left.flip(1))):
        fig, ax = plt.subplots(figsize=(2, 2))
        _overlay(ax, image, heat, "map")
        fig.savefig(tmp_path / f"{k}.png")
        plt.close(fig)
        pictures.append(_png(tmp_path / f"{k}.png"))
    assert pictures[0].std() > 10  # not blank
    assert np.abs(pictures[0] - pictures[1]).mean() > 5


def test_viz_of_two_checkpoints_on_dataset_images(runs, tmp_path):
    out = tmp_path / "figs"
    written = visualise([runs["ham"], runs["none"]], out, data="synthetic", n=3)
    names = sorted(p.name for p in written)
    assert names == sorted(
        ["contact_sheet.png"]
        + [f"image{i}_resnet20-{a}.png" for i in range(3) for a in ("ham", "none")]
        + [f"compare{i}.png" for i in range(3)]
    )
    for path in written:
        pixels = _png(path)
        assert pixels.shape[0] > 200 and pixels.shape[1] > 200 and pixels.std() > 10
    # The detailed figure of HAM has a row per stage; without attention there is none: HAM's is taller.
    assert _png(out / "image0_resnet20-ham.png").shape[0] > _png(out / "image0_resnet20-none.png").shape[0]


def test_viz_cli_on_grey_image_files(runs, tmp_path, capsys):
    files = []
    for k in range(2):
        path = tmp_path / f"item{k}.png"
        PIL.fromarray((np.random.default_rng(k).random((20, 24)) * 255).astype(np.uint8)).save(path)
        files.append(str(path))
    out = tmp_path / "figs"
    code = cli.main(["viz", "--checkpoint", str(runs["scsa_grey"]), "--image", *files, "--out", str(out),
                     "--cam", "gradcam"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out.split()
    assert sorted(printed) == sorted(str(out / n) for n in ["contact_sheet.png", "image0_resnet20-scsa.png",
                                                           "image1_resnet20-scsa.png"])  # fmt: skip
    assert _png(out / "image0_resnet20-scsa.png").std() > 10


def test_viz_bad_input_is_one_line(runs, tmp_path, capsys):
    out = str(tmp_path / "figs")
    ham, grey = str(runs["ham"]), str(runs["scsa_grey"])
    cases = [
        (["--checkpoint", ham, "--data", "synthetic", "--n", "0"], r"--n must be >= 1, got 0"),
        (["--checkpoint", ham, "--checkpoint", grey, "--data", "synthetic"], r"trained on different inputs"),
        (["--checkpoint", ham, "--image", str(tmp_path / "missing.png")], r"cannot be read as an image"),
        (["--checkpoint", ham, "--data", "synthetic", "--cam", "cam9"], r"cam must be one of"),
    ]
    for argv, match in cases:
        assert cli.main(["viz", *argv, "--out", out]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and __import__("re").search(match, err), err


def test_viz_cli_on_a_fashion_mnist_run(tmp_path, capsys):
    """The whole path on the real format: IDX files → a trained run → `plugattn viz --data fashion-mnist`,
    grey-scale figures captioned with Fashion-MNIST's class names."""
    from tests.data.formats import write_fashion_mnist

    data = tmp_path / "fmnist"
    write_fashion_mnist(data, n_train=64, n_test=16)
    run = tmp_path / "run"
    overrides = {"data": "fashion-mnist", "data_dir": str(data), "model": "resnet20", "attention": "ham",
                 "epochs": 1, "batch_size": 16, "eval_batch_size": 16, "threads": 1}  # fmt: skip
    train(resolve_config("fmnist-cpu", overrides=overrides), run, progress=False, log=lambda *_: None)
    out = tmp_path / "figs"
    argv = ["viz", "--checkpoint", str(run), "--data", "fashion-mnist", "--data-dir", str(data), "--n", "2"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    assert sorted(printed) == sorted(str(out / n) for n in ["contact_sheet.png", "image0_resnet20-ham.png",
                                                           "image1_resnet20-ham.png"])  # fmt: skip
    detail = _png(out / "image0_resnet20-ham.png")
    assert detail.std() > 10
    # Grey input drawn in grey: the input panel (top-left) has equal R, G and B.
    h, w = detail.shape[:2]
    corner = detail[int(0.08 * h) : int(0.2 * h), int(0.02 * w) : int(0.2 * w)]
    assert np.abs(corner[..., 0] - corner[..., 1]).max() < 1 and corner.std() > 5
