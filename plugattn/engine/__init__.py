"""The engine: train and evaluate epochs, optimisers and schedules, checkpoints, distributed set-up."""

from plugattn.engine.checkpoint import atomic_save, load_checkpoint
from plugattn.engine.config import PRESETS, TrainConfig, list_presets, resolve_config
from plugattn.engine.memory import allocator_state, keep_freed_memory
from plugattn.engine.optim import build_optimizer, build_scheduler
from plugattn.engine.train import evaluate, train_one_epoch

__all__ = [
    "PRESETS",
    "TrainConfig",
    "allocator_state",
    "atomic_save",
    "build_optimizer",
    "build_scheduler",
    "evaluate",
    "keep_freed_memory",
    "list_presets",
    "load_checkpoint",
    "resolve_config",
    "train_one_epoch",
]
