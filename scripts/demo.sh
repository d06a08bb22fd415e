#!/usr/bin/env bash
# Set everything up, then `luna-tui demo`: the book's ch. 11 -> ch. 12 story on the demo set
# (written once to data-unversioned/demo), about 10 minutes of training on 2 CPU cores, runs
# in runs/demo. Started again, it goes on where it stopped. Extra arguments go to
# `luna-tui demo` (--seed, --runs-dir ...). Without a terminal it runs --headless.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
MODE=()
if [ ! -t 0 ] || [ ! -t 1 ] || [ "${TERM:-dumb}" = dumb ]; then
    MODE=(--headless)
    echo "scripts/demo.sh: no interactive terminal (output piped or redirected, or TERM=dumb):" \
         "the demo runs --headless; run it in a terminal for the cockpit" >&2
fi
exec .venv/bin/luna-tui demo "${MODE[@]}" "$@"
