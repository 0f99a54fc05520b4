"""See what a trained model attends to: ``plugattn viz`` and its pieces.

* :func:`plugattn.viz.maps.module_maps` — every attention module's spatial maps and channel weights;
* :func:`plugattn.viz.cam.class_activation_maps` — Grad-CAM and Score-CAM (through torchcam);
* :mod:`plugattn.viz.figures` — the pictures;
* :func:`visualise` — all of it for one or two checkpoints on dataset images or image files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from plugattn.viz.cam import CAM_METHODS, class_activation_maps, default_target_layer
from plugattn.viz.figures import ModelView, draw_comparison, draw_contact_sheet, draw_image
from plugattn.viz.maps import ModuleMaps, module_maps, one_per_stage

__all__ = [
    "CAM_METHODS",
    "ModelView",
    "ModuleMaps",
    "class_activation_maps",
    "default_target_layer",
    "module_maps",
    "one_per_stage",
    "visualise",
]


def visualise(
    checkpoints: str | Path | Sequence[str | Path],
    out: str | Path,
    *,
    data: str | None = None,
    data_dir: str | None = None,
    split: str = "test",
    n: int = 8,
    images: Sequence[str | Path] | None = None,
    cams: Sequence[str] = ("gradcam", "scorecam"),
    layer: str | None = None,
) -> list[Path]:
    """Figures of one or two trained models on the same images; returns the PNG files written to ``out``:
    ``contact_sheet.png``, ``image<i>_<model>.png`` per image and model, and with two checkpoints
    ``compare<i>.png``. Images come from ``data``/``split`` (the first ``n``) or from files."""
    from plugattn.runs.directory import check_output_dir

    paths = [checkpoints] if isinstance(checkpoints, (str, Path)) else list(checkpoints)
    if not 1 <= len(paths) <= 2:
        raise ValueError(
            f"checkpoint must be given once or twice (two models side by side), got {len(paths)}"
        )
    if (data is None) == (images is None):
        raise ValueError("give either data (a dataset's images) or image (image files), not both")
    out = check_output_dir(out)
    models = [_load(p) for p in paths]
    if len(models[0]["shape"]) != 3:
        raise ValueError(
            f"plugattn viz draws images; {paths[0]} was trained on inputs of shape {models[0]['shape']} "
            "(signals): take its modules' maps with plugattn.attention_maps(model, x) instead"
        )
    _check_comparable(models, paths)
    x, labels = _images(models[0], data=data, data_dir=data_dir, split=split, n=n, files=images)
    views = [_view(m, x, cams, layer) for m in models]
    shown = _for_display(x, models[0]["meta"])
    classes = models[0]["meta"]["classes"]
    out.mkdir(parents=True, exist_ok=True)
    written = [draw_contact_sheet(shown, views, labels, classes, out / "contact_sheet.png")]
    for i in range(x.shape[0]):
        for m, view in zip(models, views, strict=True):
            written.append(
                draw_image(shown[i], view, i, classes, out / f"image{i}_{m['tag']}.png", label=labels[i])
            )
        if len(views) == 2:
            written.append(draw_comparison(shown[i], views, i, classes, out / f"compare{i}.png", labels[i]))
    return written


def _load(path: str | Path) -> dict[str, Any]:
    from plugattn.engine.checkpoint import load_checkpoint
    from plugattn.engine.config import TrainConfig
    from plugattn.runs.evaluate import checkpoint_file, input_shape, model_from_checkpoint

    ckpt = load_checkpoint(checkpoint_file(path))
    cfg = TrainConfig.from_dict(ckpt["config"])
    title = f"{cfg.model} + {cfg.attention or 'no attention'}"
    tag = f"{cfg.model}-{cfg.attention or 'none'}"
    return {"model": model_from_checkpoint(ckpt).eval(), "meta": ckpt["meta"], "cfg": cfg,
            "shape": input_shape(ckpt), "title": title, "tag": tag}  # fmt: skip


def _check_comparable(models: list[dict[str, Any]], paths: list) -> None:
    if len(models) == 2:
        a, b = models
        if a["shape"] != b["shape"] or a["meta"]["classes"] != b["meta"]["classes"]:
            raise ValueError(
                f"the two checkpoints {[str(p) for p in paths]} were trained on different inputs or classes "
                f"({a['shape']} {a['meta']['classes']} vs {b['shape']} {b['meta']['classes']}); "
                "side by side needs the same"
            )
        if a["tag"] == b["tag"]:
            a["tag"], b["tag"] = f"{a['tag']}-A", f"{b['tag']}-B"


def _images(model: dict[str, Any], *, data, data_dir, split, n, files) -> tuple[torch.Tensor, list[str]]:
    """A normalised batch and its captions (class names, or file names)."""
    meta = model["meta"]
    if files is not None:
        from plugattn.data.transforms import load_image_files

        c, h, w = model["shape"]
        x = load_image_files(files, channels=c, size=(h, w), mean=meta["mean"], std=meta["std"])
        return x, [Path(f).name for f in files]
    from plugattn.data import create_dataset, create_loader, dataset_entry

    cfg = model["cfg"]
    options = dict(cfg.data_options) if data == cfg.data else {}
    if "classes" in dataset_entry(data).options:
        options["classes"] = list(meta["classes"])
    dataset = create_dataset(
        data, split, root=data_dir or (cfg.data_dir if data == cfg.data else None), **options
    )
    loader = create_loader(dataset, batch_size=min(n, len(dataset)), train=False, seed=0, augment=cfg.augment)
    x, y = next(iter(loader))
    return x, [dataset.classes[k] for k in y.tolist()]


def _view(model: dict[str, Any], x: torch.Tensor, cams: Sequence[str], layer: str | None) -> ModelView:
    logits, maps = module_maps(model["model"], x)
    _, cam_maps = class_activation_maps(model["model"], x, methods=list(cams), layer=layer)
    return ModelView(model["title"], logits.softmax(1), cam_maps, maps)


def _for_display(x: torch.Tensor, meta: dict[str, Any]) -> torch.Tensor:
    """The normalised batch back in [0, 1]."""
    mean = torch.tensor(meta["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(meta["std"]).view(1, -1, 1, 1)
    return (x * std + mean).clamp(0, 1)
