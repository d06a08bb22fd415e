#!/usr/bin/env bash
# A new user's walk through the cockpit's views, the runs screen and the commands around them,
# in tmux at 80x24 and 160x48 (issue 31): it trains two short runs on a small demo set, then
# opens each screen and saves what a person would see, one text file a screen, for a reviewer
# to read against the checklist printed at the end. About 3 minutes on 2 cores.
#
#     bash scripts/walkthrough.sh [OUT]        # default OUT: /tmp/luna-walkthrough
#
# Needs tmux and the project's .venv (bash scripts/setup.sh). Writes only under OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/tmp/luna-walkthrough}
LUNA="$PWD/.venv/bin/luna-tui"
command -v tmux >/dev/null || { echo "walkthrough: needs tmux" >&2; exit 2; }
[ -x "$LUNA" ] || { echo "walkthrough: run 'bash scripts/setup.sh' first" >&2; exit 2; }
rm -rf "$OUT" && mkdir -p "$OUT/screens"
DATA="$OUT/data" CACHE="$OUT/cache" RUNS="$OUT/runs"
SESSION="luna-walk-$$"

echo "== a small demo set and two short runs (the second against the first)"
"$LUNA" synth --out "$DATA" --series 16 --negatives 40 -q
COMMON=(--data-dir "$DATA" --cache-dir "$CACHE" --runs-dir "$RUNS" --num-workers 0
        --epochs 2 --epoch-samples 256 --batch-size 16 --split series --val-stride 4
        --optimizer adam --momentum 0.9 --lr-warmup 128)
"$LUNA" --headless "${COMMON[@]}" plain > "$OUT/plain.log" 2>&1
"$LUNA" --headless "${COMMON[@]}" --balanced --baseline latest balanced > "$OUT/balanced.log" 2>&1
"$LUNA" runs --runs-dir "$RUNS" > "$OUT/screens/runs-list.txt"
COLUMNS=80 "$LUNA" queue add --runs-dir "$RUNS" --preset ch12 --epochs 1 "${COMMON[@]:0:4}" \
    > "$OUT/screens/queue-add-ch12.txt" 2>&1
COLUMNS=80 "$LUNA" queue ls --runs-dir "$RUNS" > "$OUT/screens/queue-ls-80.txt"
"$LUNA" examples latest --runs-dir "$RUNS" > "$OUT/screens/examples-table.txt"
"$LUNA" compare latest --runs-dir "$RUNS" > "$OUT/screens/compare.txt" 2>&1 || true

capture() {   # capture NAME: the tmux pane's text now
    sleep "${2:-1.5}"
    tmux capture-pane -p -t "$SESSION" > "$OUT/screens/$1.txt"
}
keys() { tmux send-keys -t "$SESSION" "$@"; }
# Esc alone: a key sent right after it would reach the app as Alt+key
esc() { tmux send-keys -t "$SESSION" Escape; sleep 1; }

for size in 80x24 160x48; do
    w=${size%x*} h=${size#*x}
    echo "== the cockpit at $size"
    tmux new-session -d -s "$SESSION" -x "$w" -y "$h" \
        "$LUNA attach latest --runs-dir $RUNS --images halfblock --quiet"
    capture "$size-1-all" 4
    for view in 2 3 4 5 6 7; do keys "$view"; capture "$size-$view"; done
    keys 5 n; capture "$size-5-next"
    keys 6 Tab Enter; capture "$size-6-enter"; esc
    keys 1 Tab Tab Tab Tab; capture "$size-1-tab4"; keys z; capture "$size-1-tab4-zoom"; keys z
    keys "?"; capture "$size-help"; esc
    keys w; capture "$size-w-runs" 2; keys "?"; capture "$size-w-runs-help"; esc; keys q
    keys q; sleep 1
    tmux kill-session -t "$SESSION" 2>/dev/null || true
    echo "== runs --tui at $size"
    tmux new-session -d -s "$SESSION" -x "$w" -y "$h" "$LUNA runs --tui --runs-dir $RUNS"
    capture "$size-runs-tui" 3
    keys "?"; capture "$size-runs-tui-help"; esc
    keys Enter; capture "$size-runs-tui-enter" 4; keys q; capture "$size-runs-tui-back" 3
    keys q; sleep 1
    tmux kill-session -t "$SESSION" 2>/dev/null || true
done

cat <<EOF

The screens are in $OUT/screens. Check, at both sizes:
  [ ] 5 (diagnostics): the first line is a verdict from the AUC interval ("better than
      chance" / "no better than chance"); the confusion panel says what CPM means
  [ ] 1: the class table's score line fits; Tab reaches it (1-tab4), z zooms it
  [ ] 6: misses are scored 0.5 or less, best hits above (or "none: ..."); Enter shows three
      planes in proportion with captions that fit (6-enter)
  [ ] w and runs --tui: RUN column keeps the comment, scores on screen; ? is the runs
      screen's own help; q in the cockpit opened from runs --tui comes back (runs-tui-back)
  [ ] runs-list, queue-ls-80 (no line over 80 columns), queue-add-ch12 (a cost per entry and
      in all), examples-table, compare
EOF
