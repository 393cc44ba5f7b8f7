#!/usr/bin/env bash
# The README's main command: set up (venv + redis-server), then run the whole pipeline with `spr demo`.
# Arguments go to `spr demo` (e.g. `scripts/demo.sh --regions 64 --fresh`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/spr demo "$@"
