#!/usr/bin/env bash
# The two commands of the README, each complete on a fresh machine:
#   bash run.sh         installs plugattn (CPU torch pinned) and runs the main job
#   bash run.sh test    installs the dev extras, lints, and runs the test suite (what CI runs)
# Extra arguments after `test` go to pytest (e.g. `bash run.sh test -m slow`).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}

install() {
    # The constraints file pins the CPU build of torch for this install only; the package itself
    # asks for torch>=2.4 like any library.
    "$PY" -m pip install --quiet --disable-pip-version-check -c constraints-cpu.txt -e ".$1"
}

case "${1:-main}" in
    main)
        install ""
        exec "$PY" -m plugattn list
        ;;
    test)
        shift
        install "[dev]"
        "$PY" -m ruff check .
        "$PY" -m ruff format --check .
        exec "$PY" -m pytest "$@"
        ;;
    *)
        echo "usage: bash run.sh [main|test [pytest args...]]; got '$1'" >&2
        exit 2
        ;;
esac
