#!/usr/bin/env bash
# Create .venv and install tcgen into it. torch==2.13.0 first: a plain `torch` (or a range
# that admits a newer release) would pull gigabytes of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
.venv/bin/python -m pip install -q -c requirements.lock -e '.[test,ray]'  # the locked versions (scripts/lock.sh)
