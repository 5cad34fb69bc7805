#!/usr/bin/env bash
# Reproduces the tables of experiments/stage3/README.md (about 6 minutes on 2 CPU cores).
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=${OUT:-outputs/experiments/stage3}
HERE=experiments/stage3
rm -rf "$OUT"
$PY train.py -m experiment=debias dataset=synthetic hydra.sweep.dir=$OUT/debias_synthetic
for FOLD in test_interest_only test; do
  $PY -m graphrecall.report $OUT/debias_synthetic --fold $FOLD \
      --metrics recall@50 ndcg@50 low_activity/recall@50 cold/recall@50 avg_pop@50 tail_share@50 coverage@50 \
      --extra val/fit/epochs --out $HERE/debias_synthetic_$FOLD.md
done
