#!/usr/bin/env bash
# The book's ch. 13-14 on the demo set, headless, on 2 CPU cores: a nodule classifier (the
# demo's balanced run), the segmentation U-Net, the malignancy model fine-tuned from the
# classifier, then `luna-tui analyze` of the validation series with all three. One split of
# the series for all of them (every 8th scan in validation, as `luna-tui demo`), so the
# analysed scans are unseen by every model. Runs go to RUNS_DIR (default runs/ch14); a step
# whose run finished before is skipped, so started again it goes on where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
L=.venv/bin/luna-tui
R=${RUNS_DIR:-runs/ch14}
D=(--data-dir data-unversioned/demo --cache-dir data-unversioned/demo-cache)
[ -f data-unversioned/demo/annotations_with_malignancy.csv ] \
    || "$L" synth --out data-unversioned/demo
SPLIT=(--split series --val-stride 8 --num-workers 0 --threads 0)

finished() {   # the newest run named $1 under $R (not its TensorBoard folders), finished
    local dir
    dir=$(ls -d "$R"/luna/*_*-"$1" 2>/dev/null | grep -v -e '-trn_' -e '-val_' | tail -1)
    [ -n "$dir" ] && grep -q '"state": "finished"' "$dir/events.jsonl" && echo "$dir"
}

train() {      # train NAME OPTIONS...: once
    local name=$1
    shift
    if ! finished "$name" >/dev/null; then
        echo "== $name: luna-tui --headless $*"
        SECONDS=0
        "$L" --headless "${D[@]}" "${SPLIT[@]}" --runs-dir "$R" "$@" "$name"
        echo "== $name took ${SECONDS} s"
    fi
}

train ch14-classifier --optimizer adam --momentum 0.9 --lr 0.001 --lr-warmup 2000 \
    --batch-size 8 --balanced --epochs 6 --epoch-samples 2000
train ch14-seg --task seg --epochs 20 --epoch-samples 2000 --val-every 4
train ch14-malignancy --task malignancy --finetune "$(finished ch14-classifier)" \
    --finetune-depth 2 --optimizer adam --momentum 0.9 --lr 0.001 --batch-size 8 --augmented \
    --epochs 10 --epoch-samples 2000
echo "== analyze"
SECONDS=0
"$L" analyze "${D[@]}" --runs-dir "$R" --series val --seg "$(finished ch14-seg)" \
    --cls "$(finished ch14-classifier)" --mal "$(finished ch14-malignancy)"
echo "== analyze took ${SECONDS} s"
"$L" runs --runs-dir "$R"
