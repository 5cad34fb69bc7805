#!/usr/bin/env bash
# Reproduces the tables of experiments/stage1/README.md (about 15 minutes on 2 CPU cores).
# Run from the repository root after `make install`:  bash experiments/stage1/run.sh
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=${OUT:-outputs/experiments/stage1}
HERE=experiments/stage1
rm -rf "$OUT"
for DATA in movielens100k synthetic; do
  $PY train.py -m experiment=aggregators dataset=$DATA hydra.sweep.dir=$OUT/aggregators_$DATA
  $PY -m graphrecall.report $OUT/aggregators_$DATA \
      --metrics recall@20 recall@50 ndcg@50 active/recall@50 low_activity/recall@50 distinct_style@50 distinct_space@50 coverage@50 avg_pop@50 tail_share@50 \
      --extra val/recall@50 val/fit/epoch_seconds val/fit/epochs \
      --out $HERE/aggregators_$DATA.md
done
$PY -m graphrecall.report $OUT/aggregators_synthetic --fold test_interest_only --metrics recall@50 ndcg@50 \
    --out $HERE/aggregators_synthetic_interest_only.md

# trigger share: at most share*K slots come from the triggers' pool, the rest from popularity
for DATA in movielens100k synthetic; do
  $PY train.py -m dataset=$DATA model=coclick,sage recall.share=0.2,0.4,0.6,0.8,1.0 trainer.enable_progress_bar=false \
      hydra.sweep.dir=$OUT/share_$DATA
  $PY -m graphrecall.report $OUT/share_$DATA --metrics recall@50 active/recall@50 distinct_style@50 coverage@50 \
      --extra val/recall@50 val/mean_backfilled --out $HERE/share_$DATA.md
done

# Optuna study of the GNN on MovieLens-100K (validation recall@50 only), then its best setting on 3 seeds
$PY -m graphrecall.search hparams_search=sage dataset=movielens100k hparams_search.n_trials=60 \
    hparams_search.output_dir=$OUT/optuna
BEST=$($PY -c "import json,sys; b=json.load(open(sys.argv[1])); print(' '.join(o for o in b['best']['overrides'] if not o.startswith('trainer.')))" $OUT/optuna/sage/best.json)
$PY train.py -m $BEST trainer.enable_progress_bar=false seed=0,1,2 hydra.sweep.dir=$OUT/optuna_best
$PY -m graphrecall.report $OUT/optuna_best --metrics recall@50 low_activity/recall@50 cold/recall@50 distinct_style@50 coverage@50 \
    --extra val/recall@50 --out $HERE/optuna_best_movielens100k.md

# plots (recall@50 per aggregator, mean ± std over seeds)
for DATA in movielens100k synthetic; do
  $PY -m graphrecall.report $OUT/aggregators_$DATA --metrics recall@50 --plot $HERE/aggregators_${DATA}_recall50.png > /dev/null
done

# hard negatives on vs off (GNN, mean), 3 seeds on each dataset
for DATA in movielens100k synthetic; do
  $PY train.py -m experiment=hard_negatives dataset=$DATA hydra.sweep.dir=$OUT/hard_$DATA
  $PY -m graphrecall.report $OUT/hard_$DATA --metrics recall@50 ndcg@50 low_activity/recall@50 distinct_style@50 \
      coverage@50 --extra val/recall@50 val/fit/epochs val/fit/epoch_seconds --out $HERE/hard_negatives_$DATA.md
done

