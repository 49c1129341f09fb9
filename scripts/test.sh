#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite. Extra arguments go to pytest.
# Two pytest-xdist workers (TCGEN_TEST_WORKERS), each taking a whole test file at a time, so
# that a module's server and fixtures live in one process; most tests wait on subprocesses
# (servers, CLI runs, worker pools), so two workers overlap that waiting on two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -n "${TCGEN_TEST_WORKERS:-2}" --dist loadfile "$@"
