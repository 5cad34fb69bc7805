#!/usr/bin/env bash
# Reproduces the tables of experiments/stage2/README.md (about 35 minutes on 2 CPU cores).
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

# diversity recall (model.diversity) off vs on, SGNS vs GNN view encoders (model.view_encoder), 3 seeds.
# One torch thread per run: on 2 cores shared with other jobs, the default thread pool made epochs ~10x slower.
# (about 2 minutes on MovieLens and 12 on synthetic here, plus 3 and 9 for the val-fold choices below)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
M="recall@50 distinct_style@50 distinct_space@50 distinct_style_clicked@50 distinct_space_clicked@50 coverage@50 tail_share@50"
VAL="recall@50 distinct_style_clicked@50 distinct_space_clicked@50 distinct_style@50 distinct_space@50 coverage@50"
for DATA in movielens100k synthetic; do
  D=${OUT}_diversity_$DATA
  rm -rf "$D"
  $PY train.py -m experiment=views_diversity dataset=$DATA hydra.sweep.dir=$D
  $PY -m graphrecall.report $D --metrics $M \
      --extra val/recall@50 val/fit/epoch_seconds test/fit/diversity/share/style test/fit/diversity/given_back/style \
      test/fit/diversity/duplicates --out $HERE/diversity_$DATA.md
  $PY -m graphrecall.report $D --fold val --metrics $VAL --out $HERE/diversity_${DATA}_val.md
done
$PY -m graphrecall.report ${OUT}_diversity_synthetic --fold test_interest_only --metrics recall@50 \
    distinct_style@50 distinct_style_clicked@50 --out $HERE/diversity_synthetic_interest_only.md

# the diversity settings, chosen on the val fold only: quota (0.2 above), rank_by=relation
for DATA in movielens100k synthetic; do
  QUOTAS=0.1,0.4; [ $DATA = movielens100k ] && QUOTAS=0.1,0.4,0.6,0.8  # val rose up to 0.4 on MovieLens
  rm -rf ${OUT}_quota_$DATA ${OUT}_rankby_$DATA
  $PY train.py -m model=m2grl dataset=$DATA model.diversity.enabled=true model.diversity.quota=$QUOTAS seed=0,1,2 \
      trainer.enable_progress_bar=false hydra.sweep.dir=${OUT}_quota_$DATA
  $PY train.py -m model=m2grl dataset=$DATA model.diversity.enabled=true model.diversity.rank_by=relation seed=0,1,2 \
      trainer.enable_progress_bar=false hydra.sweep.dir=${OUT}_rankby_$DATA
  for S in quota rankby; do
    $PY -m graphrecall.report ${OUT}_${S}_$DATA --fold val --metrics $VAL --out $HERE/${S}_${DATA}_val.md
    $PY -m graphrecall.report ${OUT}_${S}_$DATA --metrics $M --out $HERE/${S}_${DATA}.md
  done
done

# plots: recall@50 single vs multi-view; clicked distinct styles with diversity recall off / on
for DATA in movielens100k synthetic; do
  $PY -m graphrecall.report $OUT/views_$DATA --metrics recall@50 --plot $HERE/views_${DATA}_recall50.png > /dev/null
  $PY -m graphrecall.report ${OUT}_diversity_$DATA --metrics distinct_style_clicked@50 \
      --plot $HERE/diversity_${DATA}_styles_clicked.png --plot-metric distinct_style_clicked@50 > /dev/null
done
