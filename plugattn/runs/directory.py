"""A run directory: the files of one training run, their names, and every write to them.

Files::

    config.yaml      the resolved config (re-loadable with ``--config``)
    env.json         versions, device, threads, numerics, git revision, command line
    metrics.jsonl    one JSON object per epoch (rebuilt from the checkpoint on resume)
    last.pt          the checkpoint (``weights_only`` loadable)
    done             written when the last epoch is finished

Every write is atomic (:mod:`plugattn._files`): a run killed at any moment leaves each file whole, in
its old state or its new one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plugattn._files import append_line, atomic_write, remove_stale_temps
from plugattn.engine.checkpoint import atomic_save, load_checkpoint

__all__ = ["RunDirectory", "check_output_dir"]


@dataclass(frozen=True)
class RunDirectory:
    """The files of the run in ``path``."""

    path: Path

    CONFIG = "config.yaml"
    ENV = "env.json"
    METRICS = "metrics.jsonl"
    CHECKPOINT = "last.pt"
    DONE = "done"

    @property
    def checkpoint(self) -> Path:
        return self.path / self.CHECKPOINT

    @property
    def metrics(self) -> Path:
        return self.path / self.METRICS

    def holds_run(self) -> bool:
        """Has a run trained here (a checkpoint or a metrics log)?"""
        return self.checkpoint.exists() or self.metrics.exists()

    def has_started(self) -> bool:
        """Has a run been started here (its config written), finished or not?"""
        return self.checkpoint.is_file() or (self.path / self.CONFIG).is_file()

    def is_done(self) -> bool:
        return (self.path / self.DONE).is_file()

    def open(self, config: dict[str, Any], environment: dict[str, Any], history: list[dict]) -> None:
        """Make the directory and write the run's record: config, environment, and the metrics log
        rebuilt from ``history`` (the checkpoint is the record: an epoch logged after it is dropped)."""
        self.path.mkdir(parents=True, exist_ok=True)
        for name in (self.CHECKPOINT, self.CONFIG, self.ENV, self.METRICS):
            remove_stale_temps(self.path / name)  # left by a writer killed mid-write
        atomic_write(self.path / self.CONFIG, _yaml(config))
        atomic_write(self.path / self.ENV, json.dumps(environment, indent=2) + "\n")
        atomic_write(self.metrics, "".join(json.dumps(h) + "\n" for h in history))

    def save(self, state: dict[str, Any], metrics: dict[str, Any]) -> None:
        """Save the checkpoint of an epoch, then log its metrics."""
        atomic_save(state, self.checkpoint)
        append_line(self.metrics, json.dumps(metrics))

    def mark_done(self, metrics: dict[str, Any]) -> None:
        atomic_write(self.path / self.DONE, json.dumps(metrics) + "\n")

    def load(self) -> dict[str, Any]:
        return load_checkpoint(self.checkpoint)

    def history(self) -> list[dict[str, Any]]:
        """The metrics log, one dict per epoch."""
        return [json.loads(line) for line in self.metrics.read_text().splitlines() if line.strip()]


def check_output_dir(path: str | Path, argument: str = "--out") -> Path:
    """``path`` can hold a run's files: a directory, or a place where one can be made and written.

    Checked before any work, so a wrong ``--out`` costs a second, not a trained epoch, and nothing is
    written anywhere when it is refused.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{argument} {str(path)!r} exists and is not a directory; name a directory")
    parent = path
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{argument} {str(path)!r} cannot be made: {str(parent)!r} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{argument} {str(path)!r}: no permission to write in {str(parent)!r}")
    return path


def _yaml(data: dict[str, Any]) -> str:
    try:
        import yaml
    except ImportError:  # JSON is valid YAML
        return json.dumps(data, indent=2) + "\n"
    return yaml.safe_dump(data, sort_keys=False)
