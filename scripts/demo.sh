#!/usr/bin/env bash
# Set everything up, write the demo data set once, and train on it.
# Extra arguments go to luna-tui (e.g. --epochs 3). Without a terminal it runs --headless.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
DEMO=data-unversioned/demo
if [ ! -f "$DEMO/candidates.csv" ]; then
    .venv/bin/luna-tui synth --out "$DEMO"
fi
MODE=()
if [ ! -t 0 ] || [ ! -t 1 ] || [ "${TERM:-dumb}" = dumb ]; then
    MODE=(--headless)
    echo "scripts/demo.sh: no interactive terminal (output piped or redirected, or TERM=dumb):" \
         "training --headless; run it in a terminal for the cockpit" >&2
fi
exec .venv/bin/luna-tui "${MODE[@]}" --data-dir "$DEMO" --cache-dir data-unversioned/demo-cache "$@"
