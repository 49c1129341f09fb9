#!/usr/bin/env bash
# Set up (idempotent) and run the main job on its embedded defaults: the REST service on
# 127.0.0.1:8000 with its job store in tcgen.db. Extra arguments go to `tcgen serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "run: starting the REST service (tcgen serve $*); it is ready when it logs \"Uvicorn running\"" >&2
exec .venv/bin/tcgen serve "$@"
