"""The run room: what happens to a run directory.

``fit.train`` trains one run into its directory (``directory.RunDirectory``: its files, their names
and atomic writes), ``evaluate`` gives a trained model back and scores it on a split, ``compare`` runs
modules × seeds and summarises them through ``plugattn.report``.
"""

from plugattn.runs.compare import compare, summarise
from plugattn.runs.directory import RunDirectory, check_output_dir
from plugattn.runs.evaluate import evaluate_checkpoint, load_model
from plugattn.runs.fit import train

__all__ = [
    "RunDirectory",
    "check_output_dir",
    "compare",
    "evaluate_checkpoint",
    "load_model",
    "summarise",
    "train",
]
