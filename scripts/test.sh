#!/usr/bin/env bash
# Set everything up and run the checks: ruff, the import contract, and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check luna_core luna_tui tests benchmarks
.venv/bin/lint-imports
.venv/bin/pytest -q "$@"
