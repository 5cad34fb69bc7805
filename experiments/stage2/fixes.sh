#!/usr/bin/env bash
# Issue 14, seed-0 measurements: single view vs M2GRL (first version) vs M2GRL with each fix,
# MovieLens-100K (temporal) and synthetic small. One torch thread per run.
# Usage: bash experiments/stage2/fixes.sh <movielens100k|synthetic> [seed, default 0] [variant ...]
# Env: PY (python), OUT (output root), EXTRA (overrides added to every run, e.g. "dataset.loader.preset=tiny").
set -euo pipefail
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
PY=${PY:-.venv/bin/python}
DATA=$1; SEED=${2:-0}; shift; shift || true
OUT=${OUT:-outputs/stage2_fixes}/$DATA/seed$SEED
mkdir -p "$OUT"
# the first version's behaviour, spelled out (whatever conf/model/m2grl.yaml's defaults are)
OLD=(model.alignment.score=sigmoid model.alignment.detach=false model.alignment.weight=1.0 model.alignment.ramp_epochs=0
     model.alignment.exclude_own=false model.alignment.views=null model.intra.output_table=false
     model.intra.exclude_neighbors=false model.intra.min_values=0 model.weighting_lr=null)
# every fix on (score and the alignment weight vary below)
FIX=(model.alignment.exclude_own=true model.intra.output_table=true model.intra.exclude_neighbors=true
     model.intra.min_values=32 model.intra.small_views=pmi model.weighting_lr=0.05)
declare -A V=(
  [sage]="model=sage"
  [m2grl_old]="model=m2grl ${OLD[*]}"
  [fix_sigmoid]="model=m2grl ${OLD[*]} ${FIX[*]}"
  [fix_centered]="model=m2grl ${OLD[*]} ${FIX[*]} model.alignment.score=centered"
  [fix_cosine]="model=m2grl ${OLD[*]} ${FIX[*]} model.alignment.score=cosine"
  [fix_centered_detach]="model=m2grl ${OLD[*]} ${FIX[*]} model.alignment.score=centered model.alignment.detach=true"
  [fix_cosine_detach]="model=m2grl ${OLD[*]} ${FIX[*]} model.alignment.score=cosine model.alignment.detach=true"
  [fix_centered_ramp01]="model=m2grl ${OLD[*]} ${FIX[*]} model.alignment.score=centered model.alignment.weight=0.1 model.alignment.ramp_epochs=3"
  [fix_cosine_ramp01]="model=m2grl ${OLD[*]} ${FIX[*]} model.alignment.score=cosine model.alignment.weight=0.1 model.alignment.ramp_epochs=3"
  [fix_centered_small_none]="model=m2grl ${OLD[*]} ${FIX[*]} model.alignment.score=centered model.intra.small_views=none"
  [fix_centered_lr_default]="model=m2grl ${OLD[*]} ${FIX[*]} model.alignment.score=centered model.weighting_lr=null"
  [fix_centered_views2]="model=m2grl ${OLD[*]} ${FIX[*]} model.alignment.score=centered model.alignment.views=[style,space]"
  [fix_centered_div_pop]="model=m2grl ${OLD[*]} ${FIX[*]} model.alignment.score=centered model.diversity.enabled=true model.diversity.rank_by=popularity"
  [fix_centered_div_sim]="model=m2grl ${OLD[*]} ${FIX[*]} model.alignment.score=centered model.diversity.enabled=true model.diversity.rank_by=similarity"
  [m2grl_old_div_pop]="model=m2grl ${OLD[*]} model.diversity.enabled=true model.diversity.rank_by=popularity"
  [fix_cosine_ramp01_views2]="model=m2grl ${OLD[*]} ${FIX[*]} model.alignment.score=cosine model.alignment.weight=0.1 model.alignment.ramp_epochs=3 model.alignment.views=[style,space]"
  [fix_cosine_ramp01_div_popularity]="model=m2grl ${OLD[*]} ${FIX[*]} model.alignment.score=cosine model.alignment.weight=0.1 model.alignment.ramp_epochs=3 model.diversity.enabled=true model.diversity.rank_by=popularity"
  [fix_cosine_ramp01_div_similarity]="model=m2grl ${OLD[*]} ${FIX[*]} model.alignment.score=cosine model.alignment.weight=0.1 model.alignment.ramp_epochs=3 model.diversity.enabled=true model.diversity.rank_by=similarity"
  [default]="model=m2grl"
  [default_div_popularity]="model=m2grl model.diversity.enabled=true model.diversity.rank_by=popularity"
  [default_div_similarity]="model=m2grl model.diversity.enabled=true model.diversity.rank_by=similarity"
  [old_centered]="model=m2grl ${OLD[*]} model.alignment.score=centered"
  [old_exclude_own]="model=m2grl ${OLD[*]} model.alignment.exclude_own=true"
  [old_intra]="model=m2grl ${OLD[*]} model.intra.output_table=true model.intra.exclude_neighbors=true model.intra.min_values=32"
  [old_lr]="model=m2grl ${OLD[*]} model.weighting_lr=0.05"
)
NAMES=("$@"); [ ${#NAMES[@]} -eq 0 ] && NAMES=(sage m2grl_old default default_div_popularity default_div_similarity)
for name in "${NAMES[@]}"; do
  [ -f "$OUT/$name/metrics.json" ] && { echo "have: $name"; continue; }
  # shellcheck disable=SC2086
  $PY train.py dataset=$DATA seed=$SEED trainer.enable_progress_bar=false ${V[$name]} ${EXTRA:-} hydra.run.dir=$OUT/$name \
    > "$OUT/$name.log" 2>&1 || { echo "FAILED: $name (log: $OUT/$name.log)"; exit 1; }
  echo "done: $name"
done
$PY experiments/stage2/fixes_table.py "$OUT"
