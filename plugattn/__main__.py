"""``python -m plugattn`` runs the command line."""

import sys

from plugattn.cli import run

sys.exit(run())
