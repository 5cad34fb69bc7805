#!/usr/bin/env bash
# Issue 26: the headline comparisons as rolling-origin backtests (8 windows of MovieLens-100K, each 5%
# of the time line from the 60% point; every choice on that window's own validation fold).
# Usage: bash experiments/backtest/run.sh <models, comma-separated> [seeds, default 0] [sweep folder]
#   bash experiments/backtest/run.sh popular,coclick 0
#   bash experiments/backtest/run.sh sage_next_click_confident,m2grl_next_click_confident 0,1
# then pool every sweep folder of the study:
#   PYTHONPATH=src .venv/bin/python -m graphrecall.backtest multirun/backtest_ml/* --baseline model=coclick \
#       --baseline model=popular --out experiments/backtest/movielens100k.md
set -euo pipefail
cd "$(dirname "$0")/../.."
MODELS=${1:?models, comma-separated}
SEEDS=${2:-0}
SWEEP=${3:-multirun/backtest_ml/$(echo "$MODELS" | tr ',' '+')_s$(echo "$SEEDS" | tr ',' '-')}
mkdir -p multirun/backtest_ml
[ -f "$SWEEP/results.md" ] && { echo "exists: $SWEEP"; exit 0; }   # a finished sweep (train.py refuses its folder)
start=$SECONDS
.venv/bin/python train.py experiment=backtest "model=$MODELS" "seed=$SEEDS" trainer.enable_progress_bar=false \
  hydra.sweep.dir="$SWEEP" > "$SWEEP.log" 2>&1 || { echo "FAILED: $SWEEP (log: $SWEEP.log)"; exit 1; }
echo "done: $SWEEP $((SECONDS - start))s" | tee -a multirun/backtest_ml/times.txt
