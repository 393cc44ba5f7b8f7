#!/usr/bin/env bash
# The README's test command: set up (venv + redis-server), then lint, type-check and run the tests.
# Extra arguments go to pytest (e.g. `scripts/test.sh -m slow`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy shared services trainer demo eval bench/spr reward
echo "== pytest"
.venv/bin/pytest "$@"
