#!/usr/bin/env bash
# Reproduces the tables of experiments/stage2/README.md (about 8 minutes on 2 CPU cores).
# Run from the repository root after `make install`:  bash experiments/stage2/run.sh
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=${OUT:-outputs/experiments/stage2}
HERE=experiments/stage2
rm -rf "$OUT"
for DATA in movielens100k synthetic; do
  $PY train.py -m experiment=views dataset=$DATA hydra.sweep.dir=$OUT/views_$DATA
  $PY -m graphrecall.report $OUT/views_$DATA \
      --metrics recall@50 ndcg@50 low_activity/recall@50 distinct_style@50 distinct_space@50 distinct_style_clicked@50 distinct_space_clicked@50 coverage@50 tail_share@50 \
      --extra val/recall@50 val/fit/epoch_seconds val/fit/epochs \
      --out $HERE/views_$DATA.md
done
$PY -m graphrecall.report $OUT/views_synthetic --fold test_interest_only --metrics recall@50 distinct_style@50 \
    --out $HERE/views_synthetic_interest_only.md

# alignment weight 0.1 (fixed weights), synthetic
TW="{intra/content:1.0,intra/style:1.0,intra/space:1.0,intra/designer:1.0,intra/products:1.0,intra/categories:1.0,inter/style:0.1,inter/space:0.1,inter/designer:0.1,inter/products:0.1,inter/categories:0.1}"
$PY train.py -m model=m2grl dataset=synthetic model.weighting=fixed "+model.task_weights=$TW" seed=0,1,2 \
    trainer.enable_progress_bar=false hydra.sweep.dir=$OUT/views_synthetic_fixed01
$PY -m graphrecall.report $OUT/views_synthetic_fixed01 \
    --metrics recall@50 ndcg@50 distinct_style@50 distinct_space@50 distinct_style_clicked@50 distinct_space_clicked@50 coverage@50 \
    --extra val/recall@50 val/fit/epoch_seconds --out $HERE/views_synthetic_fixed01.md
$PY -m graphrecall.report $OUT/views_synthetic_fixed01 --fold test_interest_only --metrics recall@50 \
    --out $HERE/views_synthetic_fixed01_interest_only.md
