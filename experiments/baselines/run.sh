#!/usr/bin/env bash
# Reproduces every table of experiments/baselines/README.md (about 2 minutes on 2 CPU cores).
# Run from the repository root after `make install`:  bash experiments/baselines/run.sh
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=${OUT:-outputs/experiments/baselines}
HERE=experiments/baselines
rm -rf "$OUT"

# MovieLens-100K, temporal split (deterministic models: one run each, bootstrap CIs over users)
$PY train.py -m experiment=baselines hydra.sweep.dir=$OUT/ml100k_temporal
# MovieLens-100K, intervened split (DICE protocol): the split's draw changes with the seed
$PY train.py -m experiment=baselines dataset.split.kind=intervened seed=0,1,2 hydra.sweep.dir=$OUT/ml100k_intervened
# synthetic home feed (small), three worlds (data seeds), plus the true-interest ceiling
$PY train.py -m experiment=baselines dataset=synthetic 'model=popular,popular_group,coclick,oracle' \
    dataset.loader.seed=0,1,2 hydra.sweep.dir=$OUT/synthetic

M="recall@20 recall@50 ndcg@50 ips_recall@50 distinct_style@50 distinct_space@50 coverage@50 avg_pop@50 tail_share@50"
$PY -m graphrecall.report $OUT/ml100k_temporal --compare model=popular \
    --metrics recall@20 recall@50 ndcg@50 active/recall@50 cold/recall@50 distinct_style@50 distinct_space@50 coverage@50 avg_pop@50 tail_share@50 \
    --out $HERE/ml100k_temporal.md
$PY -m graphrecall.report $OUT/ml100k_intervened --metrics $M --out $HERE/ml100k_intervened.md
$PY -m graphrecall.report $OUT/synthetic --metrics recall@50 ndcg@50 low_activity/recall@50 cold/recall@50 $M \
    --out $HERE/synthetic_test.md
$PY -m graphrecall.report $OUT/synthetic --fold test_interest_only --metrics recall@20 recall@50 ndcg@50 \
    --out $HERE/synthetic_interest_only.md
$PY -m graphrecall.report $OUT/ml100k_temporal --fold val --metrics recall@50 ndcg@50 --out $HERE/ml100k_temporal_val.md

# plots (recall@50 per model, mean ± std over draws / worlds)
$PY -m graphrecall.report $OUT/ml100k_intervened --metrics recall@50 --plot $HERE/ml100k_intervened_recall50.png > /dev/null
$PY -m graphrecall.report $OUT/synthetic --metrics recall@50 --plot $HERE/synthetic_recall50.png > /dev/null

# u2i references (BPR-MF, LightGCN), 3 seeds on each dataset
for DATA in movielens100k synthetic; do
  $PY train.py -m experiment=u2i_baselines dataset=$DATA hydra.sweep.dir=$OUT/u2i_$DATA
  $PY -m graphrecall.report $OUT/u2i_$DATA --metrics recall@50 ndcg@50 low_activity/recall@50 cold/recall@50 \
      distinct_style@50 coverage@50 avg_pop@50 tail_share@50 --extra val/recall@50 val/fit/epochs \
      --out $HERE/u2i_$DATA.md
done
$PY -m graphrecall.report $OUT/u2i_synthetic --fold test_interest_only --metrics recall@50 ndcg@50 \
    --out $HERE/u2i_synthetic_interest_only.md

