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
# verl without its training stack (vLLM, wandb, ...): tests/test_verl.py reads exports with its
# RLHFDataset, whose imports the test extra holds.
.venv/bin/python -m pip install -q -c requirements.lock --no-deps verl==0.9.1
