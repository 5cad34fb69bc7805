#!/usr/bin/env bash
# Issue 26 on the synthetic feed: the rows the `small` and `fresh` write-ups quote, as 4-window rolling
# backtests (the last 4 x 3 days of the 30-day log, 15-day training windows) in 3 worlds each.
# A world is dataset.loader.seed = w; on `fresh` the run seed is w too, as experiments/fresh/run.sh.
# Usage: bash experiments/backtest/run_synthetic.sh <preset> <models, comma-separated> [worlds, default "0 1 2"]
#   bash experiments/backtest/run_synthetic.sh small popular,coclick,sage_next_click,lightgcn
#   bash experiments/backtest/run_synthetic.sh fresh popular,coclick
#   EXTRA="recall.channels.new.slots=auto recall.channels.rare.slots=auto" NAME=sage_next_click_channels \
#       bash experiments/backtest/run_synthetic.sh fresh sage_next_click
# EXTRA adds overrides (NAME then names the sweep folder); one sweep folder per world:
#   multirun/backtest_<preset>/<NAME or models>_world<w>. Then pool the worlds (a user is a user of one world):
#   PYTHONPATH=src .venv/bin/python -m graphrecall.backtest multirun/backtest_small/* --baseline model=coclick \
#       --baseline model=popular --metric recall@50 --metric ndcg@50 --out experiments/backtest/synthetic_small.md
#   (runs with channels write per-user grids over their slot counts: add --pooled-channels [--channel-grid 0,1,2,3,4]
#   for rows whose slot counts are chosen on the worlds' and windows' validation folds pooled)
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
PRESET=${1:?preset: small or fresh}
MODELS=${2:?models, comma-separated}
WORLDS=${3:-"0 1 2"}
EXTRA=${EXTRA:-}
NAME=${NAME:-$(echo "$MODELS" | tr ',' '+')}
OUT=multirun/backtest_$PRESET
mkdir -p "$OUT"
for w in $WORLDS; do
  SWEEP=$OUT/${NAME}_world$w
  [ -f "$SWEEP/results.md" ] && { echo "exists: $SWEEP"; continue; }   # a finished sweep (train.py refuses its folder)
  ARGS=(experiment=backtest_synthetic "dataset.loader.preset=$PRESET" "dataset.loader.seed=$w" "model=$MODELS"
        trainer.enable_progress_bar=false)
  [ "$PRESET" = fresh ] && ARGS+=("seed=$w")
  # shellcheck disable=SC2206
  [ -n "$EXTRA" ] && ARGS+=($EXTRA)
  start=$SECONDS
  .venv/bin/python train.py "${ARGS[@]}" hydra.sweep.dir="$SWEEP" > "$SWEEP.log" 2>&1 \
    || { echo "FAILED: $SWEEP (log: $SWEEP.log)"; exit 1; }
  echo "done: $SWEEP $((SECONDS - start))s" | tee -a "$OUT/times.txt"
done
