#!/usr/bin/env bash
# Issue 10 on the synthetic `small` preset: three worlds (dataset.loader.seed), test and interest-only
# recall@50 of the learned stage-1 recipe (model=sage_next_click) against co-click, popular,
# LightGCN and the article's stage-1 recipe (model=sage); M2GRL with the recipe (model=m2grl_next_click).
# Usage: bash experiments/learned_recall/run_synthetic.sh [worlds, default "0 1 2"] [variants, default all]
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
PY=.venv/bin/python
WORLDS=${1:-"0 1 2"}
VARIANTS=${2:-all}
OUT=multirun/learned_recall_synthetic
COMMON=(dataset=synthetic trainer.enable_progress_bar=false)
run() {  # name, overrides...
  local name=$1; shift
  [ "$VARIANTS" = all ] || [[ " $VARIANTS " == *" $name "* ]] || return 0
  for w in $WORLDS; do
    [ -f $OUT/$name/world$w/metrics.json ] && { echo "exists: $name world $w"; continue; }
    rm -rf $OUT/$name/world$w
    $PY train.py "${COMMON[@]}" dataset.loader.seed=$w "$@" hydra.run.dir=$OUT/$name/world$w > /dev/null \
      2>$OUT/$name.world$w.log || { echo "FAILED: $name world $w (log: $OUT/$name.world$w.log)"; exit 1; }
    echo "done: $name world $w"
  done
}
mkdir -p $OUT
run popular model=popular
run coclick_quota model=coclick
run sage_next_click model=sage_next_click
run lightgcn model=lightgcn
run sage_reconstruction_quota model=sage
run m2grl_next_click model=m2grl_next_click   # stage 2 with the same recipe as its content task
# + the per-trigger confidence cut-off chosen on val jointly with beta, as in run.sh
run sage_next_click_confident model=sage_next_click_confident
run m2grl_next_click_confident model=m2grl_next_click_confident
