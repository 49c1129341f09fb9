#!/usr/bin/env bash
# Create .venv and install tcgen into it. torch==2.13.0 first: a plain `torch` (or a range
# that admits a newer release) would pull gigabytes of CUDA packages. Idempotent: once a
# setup has finished, a later one with the same requirements only says so.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
say() { echo "setup: $*" >&2; }
# What the installed .venv was made from: a change to any of these installs again.
stamp=$(cat requirements.lock pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -x .venv/bin/tcgen ] && [ "$(cat .venv/.tcgen-setup 2>/dev/null)" = "$stamp" ]; then
    say ".venv is set up (requirements unchanged)"
    exit 0
fi
started=$SECONDS
if [ ! -x .venv/bin/python ]; then
    say "creating .venv with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv .venv
fi
say "installing pip, then torch==2.13.0 (the first time: a download of about 200 MB, a minute or two)"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0
say "installing tcgen and its locked dependencies (requirements.lock: ortools, fastapi, ray, the test tools)"
.venv/bin/python -m pip install -q -c requirements.lock -e '.[test,ray]'
# verl without its training stack (vLLM, wandb, ...): tests/test_verl.py reads exports with its
# RLHFDataset, whose imports the test extra holds.
say "installing verl 0.9.1 without its dependencies (tests/test_verl.py reads tcgen's exports with it)"
.venv/bin/python -m pip install -q -c requirements.lock --no-deps verl==0.9.1
echo "$stamp" > .venv/.tcgen-setup
say "done in $((SECONDS - started)) s"
