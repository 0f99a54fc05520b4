"""A fair comparison: every attention module × several seeds under one recipe, answered with
statistics and cost (``plugattn.runs.summary``), run by any engine (``plugattn.runs.launch``).

Runs go to ``OUT/<attention>/seed<k>/`` (each a normal run directory, so the grid resumes where it
stopped: finished runs are skipped, interrupted ones resumed). ``OUT/grid.json`` records the grid
(modules, seeds, recipe) so that shards of it, run anywhere that shares ``OUT``, can be gathered with
:func:`summarise_grid`. The summary is ``OUT/summary.{md,csv,json}`` and ``OUT/accuracy_vs_cost.png``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from plugattn._files import atomic_write
from plugattn.engine.config import TrainConfig
from plugattn.runs.directory import check_output_dir
from plugattn.runs.launch import Cell, SlurmOptions, cells_of_shard, check_engine, run_cells
from plugattn.runs.summary import resolve_baseline, summarise

__all__ = ["GRID", "compare", "summarise", "summarise_grid"]

Log = Callable[[str], object]
GRID = "grid.json"


def compare(
    cfg: TrainConfig,
    attentions: Sequence[str],
    seeds: Sequence[int],
    out: str | Path,
    *,
    baseline: str | None = None,
    jobs: int = 1,
    slurm: SlurmOptions | None = None,
    shard: tuple[int, int] | None = None,
    progress: bool = True,
    log: Log = print,
) -> dict[str, Any]:
    """Train ``cfg`` with each attention (``"none"`` for the baseline) and each seed, then summarise.

    Args:
        baseline: the module the others are compared with (default ``"none"`` when listed).
        jobs: cells run at once in local processes (1: in this process).
        slurm: run each cell as a submitit job instead (Slurm, or submitit's local executor).
        shard: ``(k, n)``: run only the k-th of n shares of the cells and do not summarise (an array
            job's task); gather with :func:`summarise_grid` once every shard has finished.

    Returns ``{"rows": ..., "failed": {(attention, seed): error}}``; ``rows`` is empty for a shard.
    """
    attentions = [str(a).lower() for a in attentions]
    _check_grid(attentions, seeds, jobs, shard)
    baseline = resolve_baseline(attentions, baseline)
    check_engine(slurm)
    out = check_output_dir(out)
    _record_grid(out, cfg, attentions, seeds, baseline)
    cells = [Cell(a, s) for s in seeds for a in attentions]
    mine = cells_of_shard(cells, shard)
    if shard is not None:
        log(f"[compare] shard {shard[0]}/{shard[1]}: {len(mine)} of {len(cells)} cells")
    failed = run_cells(cfg, mine, out, jobs=jobs, slurm=slurm, progress=progress, log=log)
    errors = {(c.attention, c.seed): e for c, e in failed.items()}
    if shard is not None:
        log(f"[compare] shard done; once every shard is: plugattn compare --summarise --out {out}")
        return {"rows": [], "failed": errors}
    return {"rows": summarise(out, attentions, seeds, baseline=baseline, log=log), "failed": errors}


def summarise_grid(out: str | Path, *, baseline: str | None = None, log: Log = print) -> list[dict[str, Any]]:
    """The summary of the grid recorded in ``OUT/grid.json``, from whichever of its runs have finished
    (the others are listed as missing)."""
    path = Path(out) / GRID
    if not path.is_file():
        raise ValueError(f"--out {str(out)!r} holds no comparison grid ({GRID} is missing)")
    grid = json.loads(path.read_text())
    baseline = baseline if baseline is not None else grid.get("baseline")
    return summarise(out, grid["attentions"], grid["seeds"], baseline=baseline, log=log)


def _check_grid(attentions: Sequence[str], seeds: Sequence[int], jobs: int, shard) -> None:
    if not attentions:
        raise ValueError("attention must name at least one module (use 'none' for the plain backbone)")
    if not seeds:
        raise ValueError("seeds must hold at least one seed")
    for name, values in (("attention", list(attentions)), ("seeds", list(seeds))):
        repeated = sorted({str(v) for v in values if values.count(v) > 1})
        if repeated:
            raise ValueError(
                f"{name} lists {', '.join(repeated)} more than once; each must appear once "
                "(a repeated run would be counted twice in the mean)"
            )
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an integer >= 1, got {jobs!r}")
    if shard is not None:
        k, n = shard
        if not (isinstance(k, int) and isinstance(n, int) and 1 <= k <= n):
            raise ValueError(f"shard must be K/N with 1 <= K <= N, got {k}/{n}")


def _record_grid(
    out: Path, cfg: TrainConfig, attentions: Sequence[str], seeds: Sequence[int], baseline: str | None
) -> None:
    grid = {
        "attentions": list(attentions),
        "seeds": list(seeds),
        "baseline": baseline,
        "config": cfg.to_dict(),
    }
    atomic_write(out / GRID, json.dumps(grid, indent=2, default=str))
