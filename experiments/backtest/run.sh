#!/usr/bin/env bash
# Issue 26: the headline comparisons as rolling-origin backtests (12 windows of MovieLens-100K, each 5%
# of the time line from the 40% point; every choice on that window's own validation fold).
# Usage: bash experiments/backtest/run.sh <models, comma-separated> [seeds, default 0] [windows, default all]
#   bash experiments/backtest/run.sh popular,coclick 0
#   bash experiments/backtest/run.sh sage_next_click_confident,m2grl_next_click_confident 0,1
#   bash experiments/backtest/run.sh sage_next_click_confident 0 "range(0,4)"   # windows 0-3 only
# EXTRA="model.refit_epochs=3" adds overrides (and a tag to the folder name); with a model key in EXTRA, give
# one model per call (Hydra applies it to the default model while it composes a sweep over models).
# then pool every sweep folder of the study:
#   PYTHONPATH=src .venv/bin/python -m graphrecall.backtest multirun/backtest_ml/* --baseline model=coclick \
#       --baseline model=popular --out experiments/backtest/movielens100k.md
set -euo pipefail
cd "$(dirname "$0")/../.."
MODELS=${1:?models, comma-separated}
SEEDS=${2:-0}
WINDOWS=${3:-}
EXTRA=${EXTRA:-}
NAME=$(echo "$MODELS" | tr ',' '+')_s$(echo "$SEEDS" | tr ',' '-')
if [[ "$WINDOWS" =~ ^range\(([0-9]+),([0-9]+)\)$ ]]; then NAME="${NAME}_w${BASH_REMATCH[1]}-$((BASH_REMATCH[2] - 1))"
elif [ -n "$WINDOWS" ]; then NAME="${NAME}_w$(echo "$WINDOWS" | tr -cd '0-9,' | tr ',' '-')"; fi
[ -n "$EXTRA" ] && NAME="${NAME}_$(echo "$EXTRA" | tr ' =' '_-' | tr -cd 'A-Za-z0-9_.-')"
SWEEP=${SWEEP:-multirun/backtest_ml/$NAME}
mkdir -p multirun/backtest_ml
[ -f "$SWEEP/results.md" ] && { echo "exists: $SWEEP"; exit 0; }   # a finished sweep (train.py refuses its folder)
ARGS=(experiment=backtest "model=$MODELS" "seed=$SEEDS" trainer.enable_progress_bar=false)
[ -n "$WINDOWS" ] && ARGS+=("dataset.split.rolling.index=$WINDOWS")
# shellcheck disable=SC2206
[ -n "$EXTRA" ] && ARGS+=($EXTRA)
start=$SECONDS
.venv/bin/python train.py "${ARGS[@]}" hydra.sweep.dir="$SWEEP" > "$SWEEP.log" 2>&1 \
  || { echo "FAILED: $SWEEP (log: $SWEEP.log)"; exit 1; }
echo "done: $SWEEP $((SECONDS - start))s" | tee -a multirun/backtest_ml/times.txt
