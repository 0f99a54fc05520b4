"""The figures of ``plugattn viz``, drawn with matplotlib: one image in detail, a contact sheet of a
batch, and two models side by side.

Maps are upsampled (bilinear) to the image and drawn over it in a perceptually uniform colour map
(``inferno``), each normalised to its own range, which its caption states, so a map in [0.50, 0.52]
shows its structure and says how little it varies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from plugattn._files import atomic_write
from plugattn.viz.maps import ModuleMaps, one_per_stage

__all__ = ["ModelView", "draw_comparison", "draw_contact_sheet", "draw_image"]

CMAP = "inferno"


@dataclass
class ModelView:
    """What one model made of a batch: its predictions, CAMs and attention maps."""

    title: str  # e.g. "resnet20 + ham"
    probs: torch.Tensor  # (B, K) softmax
    cams: dict[str, torch.Tensor]  # method -> (B, h, w)
    maps: list[ModuleMaps]


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError("plugattn viz draws with matplotlib: pip install 'plugattn[viz]'") from err
    return plt


def _save(plt, fig, path: Path) -> Path:
    try:
        return atomic_write(path, lambda f: fig.savefig(f, dpi=150, format="png"))
    finally:
        plt.close(fig)


def _show_image(ax, image: torch.Tensor) -> None:
    """``image``: ``(C, H, W)`` in [0, 1]; grey-scale for one channel."""
    if image.shape[0] == 1:
        ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(image[:3].permute(1, 2, 0).clamp(0, 1).numpy())
    ax.set_xticks([])
    ax.set_yticks([])


def _overlay(ax, image: torch.Tensor, heat: torch.Tensor, caption: str) -> None:
    """``heat`` ``(h, w)`` upsampled over ``image``, normalised to its range (stated in the caption)."""
    lo, hi = heat.min().item(), heat.max().item()
    size = image.shape[-2:]
    up = F.interpolate(heat[None, None].float(), size=size, mode="bilinear", align_corners=False)[0, 0]
    norm = (up - lo) / (hi - lo) if hi > lo else torch.zeros_like(up)
    _show_image(ax, image.mean(0, keepdim=True) if image.shape[0] > 1 else image)
    ax.imshow(norm.numpy(), cmap=CMAP, alpha=0.55, vmin=0, vmax=1)
    ax.set_title(f"{caption}\n[{lo:.2f}, {hi:.2f}]", fontsize=7)


def _prediction(view: ModelView, i: int, classes: Sequence[str]) -> str:
    p, k = view.probs[i].max(0)
    return f"{classes[k]} ({100 * p:.0f}%)"


def draw_image(
    image: torch.Tensor, view: ModelView, i: int, classes: Sequence[str], path: Path, *, label: str = ""
) -> Path:
    """One image through one model: the input and its CAMs on the first row; then one row per stage
    with that stage's spatial maps over the input and its channel weights as bars."""
    plt = _pyplot()
    stages = one_per_stage(view.maps)
    cols = max(1 + len(view.cams), *(len(s.spatial) + 1 for s in stages)) if stages else 1 + len(view.cams)
    rows = 1 + len(stages)
    fig, axes = plt.subplots(
        rows, cols, figsize=(2.2 * cols, 2.5 * rows), squeeze=False, layout="constrained"
    )
    for ax in axes.flat:
        ax.axis("off")
    axes[0][0].axis("on")
    _show_image(axes[0][0], image)
    axes[0][0].set_title(
        f"input{f' ({label})' if label else ''}\npredicted {_prediction(view, i, classes)}", fontsize=7
    )
    for j, (method, cam) in enumerate(view.cams.items(), start=1):
        axes[0][j].axis("on")
        _overlay(axes[0][j], image, cam[i], method)
    for r, stage in enumerate(stages, start=1):
        for j, (caption, heat) in enumerate(stage.spatial.items()):
            axes[r][j].axis("on")
            _overlay(axes[r][j], image, heat[i], f"{stage.name}\n{caption}")
        if stage.channel is not None:
            ax = axes[r][len(stage.spatial)]
            ax.axis("on")
            _channel_bars(ax, stage, i)
            weights = stage.channel[i].float().numpy()
            ax.set_title(f"{stage.name}\nchannel weights ({len(weights)})", fontsize=7)
            ax.set_ylim(0, max(1.0, float(weights.max())))
            ax.tick_params(labelsize=6)
        elif not stage.spatial:
            axes[r][0].text(0, 0.5, f"{stage.name}: {stage.note or 'no map to show'}", fontsize=7)
    fig.suptitle(view.title, fontsize=9)
    _colour_bar(plt, fig, axes)
    return _save(plt, fig, path)


def _channel_bars(ax, stage: ModuleMaps, i: int) -> None:
    """The channel weights of image ``i``; HAM's two groups in two colours, with a legend."""
    weights = stage.channel[i].float().numpy()
    if stage.important is None:
        ax.bar(range(len(weights)), weights, width=1.0, color="#444")
        return
    important = stage.important[i].numpy()
    colours = ["#d95f02" if k else "#7570b3" for k in important]
    ax.bar(range(len(weights)), weights, width=1.0, color=colours)
    handles = [plt_patch("#d95f02", f"important ({int(important.sum())})"),
               plt_patch("#7570b3", f"sub-important ({int((~important).sum())})")]  # fmt: skip
    ax.legend(handles=handles, fontsize=5, loc="lower right", framealpha=0.8)


def plt_patch(colour: str, label: str):
    from matplotlib.patches import Patch

    return Patch(color=colour, label=label)


def _colour_bar(plt, fig, axes) -> None:
    """One colour bar for every overlay: each map is drawn relative to its own range (its caption)."""
    mappable = plt.cm.ScalarMappable(cmap=CMAP, norm=plt.Normalize(0, 1))
    bar = fig.colorbar(mappable, ax=axes, shrink=0.3, aspect=25, pad=0.01)
    bar.set_ticks([0, 1], labels=["map's min", "map's max"])
    bar.ax.tick_params(labelsize=6)


def draw_contact_sheet(
    images: torch.Tensor,
    views: Sequence[ModelView],
    labels: Sequence[str],
    classes: Sequence[str],
    path: Path,
) -> Path:
    """A batch at a glance: the images on the first row, then per model each image's first CAM with
    its prediction (green when right, red when wrong)."""
    plt = _pyplot()
    n = images.shape[0]
    fig, axes = plt.subplots(
        1 + len(views), n, figsize=(1.7 * n, 1.9 * (1 + len(views))), squeeze=False, layout="constrained"
    )
    for i in range(n):
        _show_image(axes[0][i], images[i])
        axes[0][i].set_title(labels[i], fontsize=7)
        for r, view in enumerate(views, start=1):
            method, cam = next(iter(view.cams.items()))
            _overlay(axes[r][i], images[i], cam[i], "")
            predicted = classes[int(view.probs[i].argmax())]
            colour = "green" if predicted == labels[i] else "red"
            axes[r][i].set_title(_prediction(view, i, classes), fontsize=7, color=colour)
        axes[0][0].set_ylabel("input", fontsize=8)
    for r, view in enumerate(views, start=1):
        axes[r][0].set_ylabel(f"{view.title}\n{method}", fontsize=7)
    return _save(plt, fig, path)


def draw_comparison(
    image: torch.Tensor, views: Sequence[ModelView], i: int, classes: Sequence[str], path: Path, label: str
) -> Path:
    """One image through several models, one row each: prediction, CAMs, then the first spatial map
    of each stage (HAM's important-channel map, SCSA's a_h ⊗ a_w, ...)."""
    plt = _pyplot()
    rows = [(v, one_per_stage(v.maps)) for v in views]
    cols = 1 + max(len(v.cams) + len(s) for v, s in rows)
    fig, axes = plt.subplots(
        len(views), cols, figsize=(2.2 * cols, 2.5 * len(views)), squeeze=False, layout="constrained"
    )
    for r, (view, stages) in enumerate(rows):
        for ax in axes[r]:
            ax.axis("off")
        axes[r][0].axis("on")
        _show_image(axes[r][0], image)
        axes[r][0].set_title(f"{view.title}\n{label} → {_prediction(view, i, classes)}", fontsize=7)
        panels = [(m, c[i]) for m, c in view.cams.items()]
        panels += [(f"{s.name}\n{k}", h[i]) for s in stages for k, h in list(s.spatial.items())[:1]]
        for j, (caption, heat) in enumerate(panels, start=1):
            axes[r][j].axis("on")
            _overlay(axes[r][j], image, heat, caption)
        if not view.maps:
            axes[r][len(panels) + 1].text(0, 0.5, "no attention module", fontsize=8)
    return _save(plt, fig, path)
