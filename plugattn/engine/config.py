"""Training recipes: one config dataclass, named presets, YAML files and flag overrides.

Resolution order (later wins): the dataclass defaults → the preset → a YAML file → explicit flags.
The resolved config is saved beside the results (``config.yaml``), so every number can be traced to
the exact recipe that produced it.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plugattn._checks import check_choice, check_float, check_int, check_threads
from plugattn._registry import Registry, is_no_attention
from plugattn.data.registry import dataset_entry, list_datasets
from plugattn.engine.progressive import check_progressive

__all__ = ["PRESETS", "TrainConfig", "default_preset", "list_presets", "load_yaml", "resolve_config"]


@dataclass
class TrainConfig:
    """Everything a training run depends on. Units in the comments."""

    # model = backbone + attention
    model: str = "resnet20"
    attention: str | None = "ham"
    attention_kwargs: dict[str, Any] = field(default_factory=dict)
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {"stem": "small"}
    # data
    data: str = "fashion-mnist"
    data_dir: str | None = None  # None: $PLUGATTN_DATA or the dataset's default places
    data_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"split_mode": "ham"} for stl10
    download: bool = False
    augment: dict[str, Any] = field(default_factory=lambda: {"pad": 4, "flip": True})
    # progressive resizing, {} = off: {initial_scale: 0.5, finetune_fraction: 0.2} (engine/progressive.py)
    progressive_resize: dict[str, Any] = field(default_factory=dict)
    test_flip: bool = False  # evaluate on the mean logits of each image and its horizontal mirror
    eval_every: int = 1  # evaluate after every N epochs, and always after the last one
    # optimisation
    epochs: int = 200
    batch_size: int = 128  # global: split over the processes under torchrun
    eval_batch_size: int = 500
    optimizer: str = "sgd"
    lr: float = 0.1  # base learning rate, for the global batch
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    decay_norm_and_bias: bool = True
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: str = "step"  # step | cosine | onecycle | constant
    milestones: list[float] = field(default_factory=lambda: [60, 120, 160])  # epochs (step schedule)
    gamma: float = 0.2  # lr factor at each milestone
    warmup_epochs: float = 0.0
    min_lr_ratio: float = 0.0
    label_smoothing: float = 0.0
    zero_init_residual: bool = False
    # execution
    amp: str = "auto"  # auto | none | bf16 | fp16 (autocast); auto: bf16 where native, else fp32
    channels_last: bool | str = "auto"  # True | False | "auto" (on for CUDA with bf16/fp16 autocast)
    compile: bool = False
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    num_workers: int = 0  # decoding workers (image folders)
    threads: int | None = None  # torch intra-op threads; None: torch's default
    seed: int = 0

    def validate(self) -> TrainConfig:
        check_int("epochs", self.epochs, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        check_int("eval_batch_size", self.eval_batch_size, minimum=1)
        check_int("eval_every", self.eval_every, minimum=1)
        check_float("lr", self.lr, low=0, low_open=True)
        check_float("weight_decay", self.weight_decay, low=0)
        check_float("label_smoothing", self.label_smoothing, low=0, high=1, high_open=True)
        check_float("warmup_epochs", self.warmup_epochs, low=0)
        check_progressive(self.progressive_resize)
        if not isinstance(self.test_flip, bool):
            raise ValueError(f"test_flip must be true or false, got {self.test_flip!r}")
        check_choice("amp", self.amp, ("auto", "none", "bf16", "fp16"))
        if not (isinstance(self.channels_last, bool) or self.channels_last == "auto"):
            raise ValueError(f"channels_last must be True, False or 'auto', got {self.channels_last!r}")
        check_choice("optimizer", self.optimizer, ("sgd", "adamw"))
        self._check_optimizer_fields()
        check_choice("schedule", self.schedule, ("step", "cosine", "onecycle", "constant"))
        self._check_schedule_fields()
        for name in ("attention_kwargs", "model_kwargs", "data_options", "augment", "progressive_resize"):
            value = getattr(self, name)
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                raise ValueError(
                    f"{name} must be a mapping of option names to values (YAML {{name: value}}), "
                    f"got {value!r}"
                )
            glued = [k for k, v in value.items() if ":" in k and v is None]
            if glued:
                raise ValueError(
                    f"{name} has the option {glued[0]!r} with no value: YAML needs a space after the "
                    f"colon ({{{glued[0].replace(':', ': ', 1)}}})"
                )
        for name in ("nesterov", "download", "compile", "decay_norm_and_bias", "zero_init_residual"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        check_int("seed", self.seed, minimum=0)
        check_int("num_workers", self.num_workers, minimum=0)
        if self.threads is not None:
            check_threads("threads", self.threads)
        if not (isinstance(self.device, str) and re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device)):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        return self

    def _check_optimizer_fields(self) -> None:
        """Values the optimisers accept (whether the chosen one reads a field: see resolve_config)."""
        check_float("momentum", self.momentum, low=0, high=1, high_open=True)
        betas = self.betas
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise ValueError(f"betas must be two numbers (beta1, beta2), got {betas!r}")
        for i, beta in enumerate(betas):
            check_float(f"betas[{i}]", beta, low=0, high=1, high_open=True)

    def _check_schedule_fields(self) -> None:
        if not isinstance(self.milestones, (list, tuple)):
            raise ValueError(f"milestones must be a list of epochs, got {self.milestones!r}")
        for m in self.milestones:
            check_float("milestones", m, low=0)
        if list(self.milestones) != sorted(self.milestones):
            raise ValueError(f"milestones must be in increasing order, got {list(self.milestones)}")
        check_float("gamma", self.gamma, low=0, high=1, low_open=True)
        check_float("min_lr_ratio", self.min_lr_ratio, low=0, high=1)
        if self.warmup_epochs > self.epochs:
            raise ValueError(
                f"warmup_epochs={self.warmup_epochs} is longer than the run (epochs={self.epochs})"
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Exactly the config saved by :meth:`to_dict` (``None`` values kept, unlike flag overrides)."""
        cfg = cls()
        _apply(cfg, data, "saved config")
        return cfg.validate()

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d


# EEGNet (+ HAM on its feature sequence) on real EEG trials, sized for a minute on two CPU cores: AdamW
# at 1e-3 (the EEGNet paper trains with Adam at Keras's default 1e-3), batch 64, cosine decay, no
# augmentation, the test split evaluated every 10 epochs and after the last. fp32 on every machine, for
# results comparable across CPUs with and without native bf16 (not for speed: where bf16 is native it
# trains EEGNet faster, see docs/signals.md). The same recipe for both EEG sets.
_EEGNET: dict[str, Any] = {
    "model": "eegnet",
    "attention": "ham",
    "epochs": 100,
    "batch_size": 64,
    "eval_batch_size": 500,
    "optimizer": "adamw",
    "lr": 1e-3,
    "weight_decay": 1e-2,
    "schedule": "cosine",
    "augment": {},
    "eval_every": 10,
    "amp": "none",
}

_PRESETS: dict[str, dict[str, Any]] = {
    # HAM paper, CIFAR: SGD 0.9, wd 5e-4, batch 128, lr 0.1 / 5 at 60/120/160, 200 epochs, pad-4 + flip.
    "ham-cifar": {
        "data": "cifar10",
        "epochs": 200,
        "batch_size": 128,
        "lr": 0.1,
        "schedule": "step",
        "milestones": [60, 120, 160],
        "gamma": 0.2,
        "weight_decay": 5e-4,
        "augment": {"pad": 4, "flip": True},
    },
    # HAM paper, STL-10: as above with batch 64, pad 12, the 9,100/3,900 re-split, 96x96.
    "ham-stl10": {
        "data": "stl10",
        "data_options": {"split_mode": "ham"},
        "model": "resnet18",
        "model_kwargs": {"stem": "small"},  # 3×3 stride-1 stem: 96×96 maps in stage 1
        "epochs": 200,
        "batch_size": 64,
        "lr": 0.1,
        "schedule": "step",
        "milestones": [60, 120, 160],
        "gamma": 0.2,
        "weight_decay": 5e-4,
        "augment": {"pad": 12, "flip": True},
    },
    # SCSA official config: ResNet-50, SGD lr 0.05 batch 128 wd 1e-4, 100 epochs, x0.1 at 30/60/90,
    # RandomResizedCrop 224 + flip; test resize 256 -> centre 224.
    "scsa-imagenet": {
        "data": "imagefolder",
        "model": "resnet50",
        "attention": "scsa",
        "epochs": 100,
        "batch_size": 128,
        "lr": 0.05,
        "weight_decay": 1e-4,
        "schedule": "step",
        "milestones": [30, 60, 90],
        "gamma": 0.1,
        "augment": {"size": 224, "resize": 256, "flip": True},
        "num_workers": 8,
    },
    # Short CPU recipe: ResNet-20 + HAM on Fashion-MNIST on two cores, sized for 20 minutes of training
    # in fp32 on a CPU without native bf16 with HAM's native kernels (measured: docs/training.md);
    # numerics "auto" (bf16 autocast only where the CPU has native bf16). Seven epochs of one-cycle with
    # progressive resizing (16 -> 28 pixels over the first 80%, the rest at full size), flips, and flip
    # test-time augmentation; the test set is evaluated once, after the last epoch (each evaluation costs
    # about 10% of an epoch).
    "fmnist-cpu": {
        "data": "fashion-mnist",
        "model": "resnet20",
        "attention": "ham",
        "epochs": 7,
        "batch_size": 128,
        "lr": 0.2,
        "schedule": "onecycle",
        "warmup_epochs": 1,
        "weight_decay": 5e-4,
        "label_smoothing": 0.1,
        "augment": {"pad": 0, "flip": True},
        "progressive_resize": {"initial_scale": 0.5, "finetune_fraction": 0.2},
        "test_flip": True,
        "eval_every": 7,
        # channels_last for this model on either CPU kind: ResNet-20 + HAM trained 1.17x (AVX2) and 1.23x
        # (AVX-512) faster in it in fp32 at 28x28 (docs/benchmark_targets*.md); "auto" stays contiguous
        # on the CPU because that does not hold for every model (SCSA: 0.90-0.97x on AVX2).
        "channels_last": True,
    },
    "eegnet-blink": {"data": "eeg-blink", **_EEGNET},
    "eegnet-scp1": {"data": "eeg-scp1", **_EEGNET},
}

PRESETS: Registry[dict[str, Any]] = Registry("preset")
for _name, _fields in _PRESETS.items():
    PRESETS.register(_name, _fields)

# The recipe a run follows when it names neither a preset nor a config file: its dataset's own, where
# one exists (an image recipe's resizing and flips mean nothing on an EEG trial), else fmnist-cpu.
# Any other .ts set (data "ts") follows the Blink recipe.
DATA_PRESETS = {"eeg-blink": "eegnet-blink", "eeg-scp1": "eegnet-scp1", "ts": "eegnet-blink"}


def default_preset(data: str | None) -> str:
    """The preset of a run on dataset ``data`` that names no recipe (``fmnist-cpu`` unless listed)."""
    return DATA_PRESETS.get(str(data).lower(), "fmnist-cpu") if data is not None else "fmnist-cpu"


# Fields that only some optimisers or schedules read: (the field that decides, the values that read it).
USED_BY: dict[str, tuple[str, tuple[str, ...]]] = {
    "momentum": ("optimizer", ("sgd",)),
    "nesterov": ("optimizer", ("sgd",)),
    "betas": ("optimizer", ("adamw",)),
    "milestones": ("schedule", ("step",)),
    "gamma": ("schedule", ("step",)),
    "min_lr_ratio": ("schedule", ("cosine", "onecycle")),
}


def _check_used(cfg: TrainConfig, given: set[str]) -> None:
    """A field the user set (in a YAML file or a flag) that the chosen optimiser or schedule ignores is an
    error, not a silent no-op; fields a preset sets for its own optimiser and schedule are left alone."""
    for name in sorted(given & set(USED_BY)):
        decider, users = USED_BY[name]
        if getattr(cfg, decider) not in users:
            raise ValueError(
                f"{name} has no effect with {decider}={getattr(cfg, decider)!r} (only with "
                f"{' or '.join(map(repr, users))}); remove it, or set {decider}"
            )


def list_presets() -> list[str]:
    return PRESETS.names()


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file of config fields (needs PyYAML: ``pip install plugattn[train]``)."""
    try:
        import yaml
    except ImportError as err:  # pragma: no cover - the train extra installs it
        raise ValueError("reading a YAML config needs PyYAML: pip install 'plugattn[train]'") from err
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"config file {str(path)!r} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(
            f"config file {str(path)!r} must hold a mapping of fields, got {type(data).__name__}"
        )
    return data


def _apply(cfg: TrainConfig, updates: dict[str, Any], source: str) -> None:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    for key, value in updates.items():
        key = key.replace("-", "_")
        if key not in names:
            raise ValueError(f"{source}: unknown config field {key!r}; fields: {', '.join(sorted(names))}")
        if key == "betas" and isinstance(value, list):
            value = tuple(value)
        setattr(cfg, key, value)


def resolve_config(
    preset: str | None = None, yaml_path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> TrainConfig:
    """Defaults, then ``preset``, then the YAML file, then ``overrides`` (``None`` values ignored)."""
    cfg = TrainConfig()
    augment_for = cfg.data  # the dataset the current augment was written for
    layers = []
    if preset is not None:
        layers.append((PRESETS.lookup(preset), f"preset {preset!r}"))
    if yaml_path is not None:
        layers.append((load_yaml(yaml_path), str(yaml_path)))
    layers.append(({k: v for k, v in (overrides or {}).items() if v is not None}, "flags"))
    for updates, source in layers:
        _apply(cfg, updates, source)
        if "augment" in updates:
            augment_for = cfg.data
    given = {k.replace("-", "_") for updates, _ in layers[1 if preset is not None else 0 :] for k in updates}
    if cfg.data != augment_for and isinstance(cfg.data, str) and cfg.data in list_datasets():
        # A recipe's augment belongs to its dataset (pad-and-crop does not apply to image folders):
        # another dataset, named without an augment, brings its own.
        cfg.augment = dict(dataset_entry(cfg.data).augment)
    if is_no_attention(cfg.attention):
        cfg.attention = None
    cfg.validate()
    _check_used(cfg, given)
    return cfg
