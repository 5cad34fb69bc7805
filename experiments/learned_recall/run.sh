#!/usr/bin/env bash
# Issue 10, first measurements: the article's recipe vs the next-click objective, quota vs aggregate
# serving with a validation-chosen popularity bonus, refit on the test fold; MovieLens-100K temporal.
# Usage: bash experiments/learned_recall/run.sh [seeds, default "0 1 2"] [variants, default all]
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
PY=.venv/bin/python
SEEDS=${1:-"0 1 2"}
VARIANTS=${2:-all}
OUT=multirun/learned_recall
BETAS='recall.popularity_beta=[0,0.001,0.003,0.01,0.03,0.1,0.3,1,3,10]'
COMMON=(dataset=movielens100k trainer.enable_progress_bar=false)
run() {  # name, overrides...
  local name=$1; shift
  [ "$VARIANTS" = all ] || [[ " $VARIANTS " == *" $name "* ]] || return 0
  for s in $SEEDS; do
    [ -f $OUT/$name/seed$s/metrics.json ] && { echo "exists: $name seed $s"; continue; }
    rm -rf $OUT/$name/seed$s
    $PY train.py "${COMMON[@]}" seed=$s "$@" hydra.run.dir=$OUT/$name/seed$s > /dev/null 2>$OUT/$name.seed$s.log \
      || { echo "FAILED: $name seed $s (log: $OUT/$name.seed$s.log)"; exit 1; }
    echo "done: $name seed $s"
  done
}
mkdir -p $OUT
run popular model=popular
run coclick_quota model=coclick
run coclick_aggregate model=coclick recall.mode=aggregate "$BETAS"
run sage_reconstruction_quota model=sage
run sage_reconstruction_aggregate_refit model=sage model.refit=true recall.mode=aggregate "$BETAS"
run sage_next_click_aggregate_refit model=sage model.objective=next_click model.refit=true recall.mode=aggregate "$BETAS" \
  model.optim.batch_size=1024 model.next_click.num_uniform=256
run sage_next_click_cosine_aggregate_refit model=sage model.objective=next_click model.refit=true recall.mode=aggregate "$BETAS" \
  model.optim.batch_size=1024 model.next_click.num_uniform=256 model.encoder.normalize=true model.optim.temperature=0.1
# the learned recipe of conf/model/sage_next_click.yaml: next click + popularity term, probability pool, refit
run sage_next_click_popularity model=sage_next_click
run m2grl_next_click model=m2grl_next_click   # stage 2 with the same recipe as its content task
# + the per-trigger confidence cut-off (model.triggers.min_score: a grid of next-click probabilities, null = off,
# chosen on val jointly with beta)
run sage_next_click_confident model=sage_next_click_confident
run m2grl_next_click_confident model=m2grl_next_click_confident
[ "$VARIANTS" = all ] || exit 0
$PY experiments/learned_recall/table.py $OUT > experiments/learned_recall/movielens100k.md
cat experiments/learned_recall/movielens100k.md
