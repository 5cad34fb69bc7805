"""Where do the hits of a trigger-selection list come from? Precision of the slots filled from the
triggers' pool neighbours vs the slots back-filled from popularity, on the validation fold.

    .venv/bin/python experiments/stage1/slot_precision.py [--datasets movielens100k synthetic]

Trigger selection places the trigger-filled items first and the back-fill after them
(`recall/triggers.py`), so the first `from_triggers` positions of each list are trigger slots.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import train as train_app  # noqa: E402
from graphrecall.evaluation import targets_matrix  # noqa: E402
from tests.conftest import compose_train  # noqa: E402


def slot_precision(dataset: str, model: str, work: Path) -> dict[str, float]:
    cfg = compose_train(work / f"{dataset}_{model}", [f"dataset={dataset}", f"model={model}", "eval.folds=[val]",
                                                      "eval.bootstrap.num_resamples=10",
                                                      "trainer.enable_progress_bar=false"])
    cfg.data_dir, cfg.cache_dir = str(ROOT / "data"), str(ROOT / "data" / "cache")
    metrics, objects = train_app.train(cfg)
    recs = objects["evaluations"][0].recs
    fold = objects["folds"]["val"]
    targets = targets_matrix(fold.targets, recs.users, objects["dataset"].num_contents)
    rows = np.arange(len(recs.users))[:, None]
    hit = np.asarray(targets[rows, np.maximum(recs.items, 0)].todense()).astype(bool) & (recs.items >= 0)
    trig = np.arange(recs.items.shape[1])[None, :] < recs.counters["from_triggers"][:, None]
    back = ~trig & (recs.items >= 0)
    return {"val/recall@50": metrics["val/recall@50"], "trigger_slots": int(trig.sum()),
            "trigger_hits": int(hit[trig].sum()), "trigger_precision": hit[trig].sum() / max(trig.sum(), 1),
            "backfill_slots": int(back.sum()), "backfill_hits": int(hit[back].sum()),
            "backfill_precision": hit[back].sum() / max(back.sum(), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["movielens100k", "synthetic"])
    parser.add_argument("--models", nargs="+", default=["coclick", "sage"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [(d, m, slot_precision(d, m, Path(tmp))) for d in args.datasets for m in args.models]
    print(f"\n{'dataset':14s} {'model':8s} {'val R@50':>8s} {'trig slots':>10s} {'hits':>5s} {'prec':>6s}"
          f" {'backfill':>8s} {'hits':>5s} {'prec':>6s}")
    for d, m, r in rows:
        print(f"{d:14s} {m:8s} {r['val/recall@50']:8.4f} {r['trigger_slots']:10d} {r['trigger_hits']:5d} "
              f"{r['trigger_precision']:6.4f} {r['backfill_slots']:8d} {r['backfill_hits']:5d} {r['backfill_precision']:6.4f}")


if __name__ == "__main__":
    main()
