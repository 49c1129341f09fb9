#!/usr/bin/env bash
# Set up (idempotent) and run the main job on its embedded defaults: a level-2 JSONL file
# of validated samples. Extra arguments go to `tcgen generate`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/tcgen generate --output_file samples.jsonl --level 2 --target_count 100 \
    --min_flops 65536 --max_flops 4194304 "$@"
