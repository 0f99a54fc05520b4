"""Where a grid's cells run. A cell is one (attention, seed) run into its own run directory, so cells
are independent and any engine can run them:

* ``sequential``: one after another in this process (the default);
* ``processes``: ``jobs`` local processes, one cell each at a time; on a machine with GPUs each process
  sees one GPU (``CUDA_VISIBLE_DEVICES``, round robin), on a CPU each gets ``cores // jobs`` threads
  unless the recipe sets ``threads``;
* ``submitit``: one job per cell through submitit (``pip install 'plugattn[cluster]'``): Slurm with
  its partition, GPUs, CPUs and time limit, or submitit's local executor, which runs each job as a local
  process the same way (how the tests run it).

Every engine runs the same function, :func:`run_cell`: it trains (resuming an interrupted run, skipping
a finished one) and, when the run raises, records the error in the cell's ``failed.txt`` and returns it
instead of raising, so one failed cell never stops the others.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from plugattn._files import atomic_write
from plugattn.engine.config import TrainConfig
from plugattn.runs.fit import train
from plugattn.runs.summary import FAILED, cell_directory

__all__ = ["Cell", "SlurmOptions", "cells_of_shard", "check_engine", "run_cell", "run_cells"]

Log = Callable[[str], object]


@dataclass(frozen=True)
class Cell:
    attention: str  # "none" for the plain backbone
    seed: int


@dataclass(frozen=True)
class SlurmOptions:
    """What a submitit job asks of the cluster (``cluster="local"``: submitit's local executor)."""

    cluster: str = "slurm"  # or "local": submitit's local executor (never a silent fallback)
    partition: str | None = None
    gpus_per_job: int = 0
    cpus_per_job: int = 2
    timeout_min: int = 60 * 24


def check_engine(slurm: SlurmOptions | None) -> None:
    """Fail before anything is written when the engine asked for is not there."""
    if slurm is None:
        return
    if slurm.cluster not in ("slurm", "local"):
        raise ValueError(f"launcher must be 'slurm' or 'local', got {slurm.cluster!r}")
    try:
        import submitit  # noqa: F401
    except ImportError as err:
        raise ImportError("--launcher needs submitit: pip install 'plugattn[cluster]'") from err
    if slurm.cluster == "slurm" and shutil.which("srun") is None:
        raise ValueError(
            "--launcher slurm: no Slurm here (srun is not on PATH); use --launcher local to try the grid "
            "on this machine, or --jobs N"
        )


def cells_of_shard(cells: Sequence[Cell], shard: tuple[int, int] | None) -> list[Cell]:
    """Shard ``(k, n)`` (1-based): every n-th cell starting at the k-th, so shards of an array job
    split the grid evenly and together cover it exactly once."""
    if shard is None:
        return list(cells)
    k, n = shard
    return [c for i, c in enumerate(cells) if i % n == k - 1]


def run_cell(
    cfg: dict[str, Any], cell: Cell, out: str, progress: bool = False, log: Log | None = None
) -> str | None:
    """Train ``cell`` of the grid in ``out`` with recipe ``cfg`` (a ``TrainConfig`` as a dict, so any
    engine can ship it); returns ``None``, or the error that stopped it (also in its ``failed.txt``)."""
    run = cell_directory(Path(out), cell.attention, cell.seed)
    if run.is_done():
        return None
    attention = None if cell.attention == "none" else cell.attention
    run_cfg = replace(TrainConfig.from_dict(cfg), attention=attention, seed=cell.seed)
    failed = run.path / FAILED
    failed.unlink(missing_ok=True)  # a retry: its old error no longer stands
    try:
        train(run_cfg, run.path, resume=run.has_started(), progress=progress, log=log or _quiet)
    except Exception as err:  # recorded and reported; the other cells go on
        error = f"{type(err).__name__}: {' '.join(str(err).split())}"
        atomic_write(failed, error + "\n")
        return error
    return None


def _quiet(*_: object) -> None:
    pass


def run_cells(
    cfg: TrainConfig,
    cells: Sequence[Cell],
    out: Path,
    *,
    jobs: int = 1,
    slurm: SlurmOptions | None = None,
    progress: bool = True,
    log: Log = print,
) -> dict[Cell, str]:
    """Run ``cells`` with the engine the arguments name; returns the failed cells and their errors."""
    todo = [c for c in cells if not cell_directory(out, c.attention, c.seed).is_done()]
    for c in cells:
        if c not in todo:
            log(f"[compare] {c.attention} seed {c.seed}: done, skipped")
    if slurm is not None:
        errors = _submitit(cfg, todo, out, slurm, log)
    elif jobs > 1:
        errors = _processes(cfg, todo, out, jobs, log)
    else:
        errors = {}
        for c in todo:
            run = cell_directory(out, c.attention, c.seed)
            verb = "resuming" if run.has_started() else "training"
            log(f"[compare] {c.attention} seed {c.seed}: {verb} in {run.path}")
            error = run_cell(cfg.to_dict(), c, str(out), progress, log)
            if error:
                errors[c] = error
    for c, error in errors.items():
        log(f"[compare] {c.attention} seed {c.seed}: FAILED: {error}")
    return errors


def _processes(cfg: TrainConfig, cells: Sequence[Cell], out: Path, jobs: int, log: Log) -> dict[Cell, str]:
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if cfg.threads is None and not gpus:
        cfg = replace(cfg, threads=max(1, (os.cpu_count() or 1) // jobs))  # a thread budget per process
    slots = multiprocessing.get_context("spawn").Queue()
    for k in range(jobs):
        slots.put(k)
    errors = {}
    log(f"[compare] {len(cells)} cells in {jobs} processes" + (f" over {gpus} GPUs" if gpus else ""))
    with ProcessPoolExecutor(
        jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_claim_slot, initargs=(slots, gpus)
    ) as pool:
        futures = {c: pool.submit(run_cell, cfg.to_dict(), c, str(out)) for c in cells}
        for c, future in futures.items():
            error = future.result()
            log(f"[compare] {c.attention} seed {c.seed}: {'failed' if error else 'finished'}")
            if error:
                errors[c] = error
    return errors


def _claim_slot(slots: Any, gpus: int) -> None:
    """A worker process's start: take a slot, and with GPUs see only the slot's GPU."""
    slot = slots.get()
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(slot % gpus)


def _submitit(
    cfg: TrainConfig, cells: Sequence[Cell], out: Path, options: SlurmOptions, log: Log
) -> dict[Cell, str]:
    import submitit

    executor = submitit.AutoExecutor(folder=out / ".submitit" / "%j", cluster=options.cluster)
    params: dict[str, Any] = {"timeout_min": options.timeout_min, "cpus_per_task": options.cpus_per_job,
                              "name": f"plugattn-{out.name}"}  # fmt: skip
    if options.gpus_per_job:
        params["gpus_per_node"] = options.gpus_per_job
    if options.partition:
        params["slurm_partition"] = options.partition
    executor.update_parameters(**params)
    jobs = {c: executor.submit(run_cell, cfg.to_dict(), c, str(out)) for c in cells}
    ids = ", ".join(j.job_id for j in jobs.values())
    log(f"[compare] submitted {len(jobs)} jobs ({executor.cluster}): {ids}")
    errors = {}
    for c, job in jobs.items():
        try:
            error = job.result()
        except Exception as err:  # the job itself died (killed, out of time): its cell is missing
            error = f"job {job.job_id}: {' '.join(str(err).split())[:300]}"
            atomic_write(cell_directory(out, c.attention, c.seed).path / FAILED, error + "\n")
        if error:
            errors[c] = error
    return errors
