#!/usr/bin/env bash
# Issue 27: stage 1 with the learned recipe (model=sage_next_click) trained on the synthetic `large` preset
# (100k contents, 10M clicks) within a stated budget, beside co-click and popular on the same folds.
# Budget: EPOCHS (default 2) epochs of BATCHES (default 500) steps, validation after each, the best epoch kept;
# the 10/5 GraphSAGE fan-out of the end-to-end run; no refit (the validation-trained weights re-embed the test
# fold's graph); the serving bonus off (popularity_beta=0): the pool alone decides. Each run lands in $OUT/<name>.
# Usage: bash experiments/scale/run_large_stage1.sh baselines                 # popular and co-click
#        bash experiments/scale/run_large_stage1.sh <name> [train.py overrides ...]   # stage 1, e.g.
#        bash experiments/scale/run_large_stage1.sh stage1_w0 model.popularity.pool_weight=0
# Then: .venv/bin/python experiments/scale/pool_diagnosis.py $OUT/<name>/0   (the served pool vs its similarity pool)
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
NAME=${1:?a name: baselines, or the stage-1 variant}
shift
PRESET=${PRESET:-large}
OUT=${OUT:-multirun/large}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT"
[ -e "$OUT/$NAME" ] && { echo "exists: $OUT/$NAME"; exit 1; }
ARGS=(-m dataset=synthetic "dataset.loader.preset=$PRESET" trainer.enable_progress_bar=false "hydra.sweep.dir=$OUT/$NAME")
if [ "$NAME" = baselines ]; then
  ARGS+=(model=popular,coclick)
else
  ARGS+=(model=sage_next_click "model.sampling.fanouts=[10,5]" model.refit=false model.triggers.popularity_beta=0
         "trainer.max_epochs=${EPOCHS:-2}" "+trainer.limit_train_batches=${BATCHES:-500}")
fi
start=$SECONDS
"$PY" train.py "${ARGS[@]}" "$@" > "$OUT/$NAME.log" 2>&1 || { echo "FAILED: $OUT/$NAME (log: $OUT/$NAME.log)"; exit 1; }
echo "done: $OUT/$NAME $((SECONDS - start)) s" | tee -a "$OUT/times.txt"
