#!/usr/bin/env bash
# Issue 10, item 6: an equal tuning budget per family on MovieLens-100K (temporal), validation only.
# 1. One Optuna study per family (conf/hparams_search/family_*.yaml: 24 trials, TPE seed 0, the
#    objective val/warm/recall@50; trials run the val fold only, so test never steers anything).
# 2. Each family's best configuration, 3 seeds, refit on everything before the cut (trainable
#    families), evaluated on test; then the table with paired bootstrap differences vs the tuned
#    popular and co-click baselines (experiments/learned_recall/table.py).
# Usage: bash experiments/learned_recall/family_study.sh [families, default all] [seeds, default "0 1 2"]
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
PY=${PY:-.venv/bin/python}
FAMILIES=${1:-"popular coclick mf lightgcn sage m2grl"}
SEEDS=${2:-"0 1 2"}
STUDIES=${STUDIES:-outputs/family_study}
OUT=${OUT:-multirun/learned_recall_family}
EXTRA=${EXTRA:-}   # overrides added to every trial and run (tests: a tiny dataset)
STUDY_EXTRA=${STUDY_EXTRA:-}   # study overrides (tests: hparams_search.n_trials=2)
DATASET=${DATASET:-movielens100k}
mkdir -p "$STUDIES" "$OUT"
for f in $FAMILIES; do   # a rerun resumes a study until its 24 trials have finished
  # shellcheck disable=SC2086
  $PY -m graphrecall.search hparams_search=family_$f dataset=$DATASET $EXTRA $STUDY_EXTRA hparams_search.output_dir=$STUDIES \
    > "$STUDIES/family_$f.log" 2>&1 || { echo "FAILED: study $f (log: $STUDIES/family_$f.log)"; exit 1; }
  echo "study done: $f ($(grep -m1 '^best trial' "$STUDIES/family_$f.log"))"
done
for f in $FAMILIES; do
  # the best trial's own overrides (study overrides, dataset and $EXTRA, best parameters), without
  # eval.folds=[val]: the seed runs score val and test (graphrecall.best_setting)
  BEST_TEXT=$($PY -m graphrecall.best_setting "$STUDIES/family_$f/best.json" --overrides)
  mapfile -t BEST <<< "$BEST_TEXT"
  REFIT=(); case $f in popular|coclick) ;; *) REFIT=(model.refit=true) ;; esac
  for s in $SEEDS; do
    [ -f "$OUT/$f/seed$s/metrics.json" ] && { echo "exists: $f seed $s"; continue; }
    rm -rf "$OUT/$f/seed$s"
    $PY train.py "${BEST[@]}" "${REFIT[@]}" seed=$s hydra.run.dir="$OUT/$f/seed$s" \
      > /dev/null 2> "$OUT/$f.seed$s.log" || { echo "FAILED: $f seed $s (log: $OUT/$f.seed$s.log)"; exit 1; }
    echo "done: $f seed $s"
  done
done
