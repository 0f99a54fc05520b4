"""``python -m plugattn`` runs the command line."""

import sys

from plugattn.cli import main

sys.exit(main())
