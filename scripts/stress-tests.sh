#!/usr/bin/env bash
# The live-run test files (real runs, sockets, signals, the cockpit over a real loop), ROUNDS
# times in a row, while BUSY processes spin on the CPUs beside them: a test that waits on a
# sleep instead of an event, or on a deadline too short for a loaded machine, fails here.
#   bash scripts/stress-tests.sh            # 5 rounds, 2 busy processes
#   ROUNDS=10 BUSY=4 bash scripts/stress-tests.sh -x
# Extra arguments go to pytest. Exit status: that of the first failing round, else 0.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
BUSY=${BUSY:-2}
FILES=(
    tests/test_attach_app.py tests/test_attach_core.py tests/test_attach_sighup.py
    tests/test_cockpit_app.py tests/test_cockpit_real.py tests/test_cockpit_views.py
    tests/test_signals.py tests/test_control.py tests/test_control_socket.py tests/test_ctl.py
    tests/test_steering.py tests/test_notify.py tests/test_queue.py tests/test_ranks.py
    tests/test_analysis_folder.py
)
bash scripts/setup.sh
spinners=()
cleanup() { for pid in "${spinners[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT
for _ in $(seq "$BUSY"); do
    .venv/bin/python -c "while True: pass" &
    spinners+=($!)
done
for round in $(seq "$ROUNDS"); do
    start=$(date +%s)
    if ! .venv/bin/pytest -q -p no:cacheprovider "${FILES[@]}" "$@"; then
        echo "stress-tests: round $round of $ROUNDS failed (with $BUSY busy processes)" >&2
        exit 1
    fi
    echo "stress-tests: round $round of $ROUNDS passed in $(( $(date +%s) - start )) s" \
         "with $BUSY busy processes"
done
