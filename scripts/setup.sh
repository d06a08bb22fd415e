#!/usr/bin/env bash
# Create .venv and install luna-tui with its test tools. Idempotent.
# TORCH_SPEC picks the torch build: the default is the CPU build pinned for these machines;
# on a GPU box use TORCH_SPEC=torch (PyPI's Linux wheels are CUDA builds) or a CUDA wheel index.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    .venv/bin/python -m pip install -q "$TORCH_SPEC"
fi
.venv/bin/python -m pip install -q -e ".[dev]"
