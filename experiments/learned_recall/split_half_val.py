"""How much of a cut-off variant's validation margin over co-click is selection (issue 25).

A ``*_confident`` run judges each epoch at the best of 90 (beta, min_score) pairs on the same
validation users it reports, while co-click has one setting: the reported validation number is a
maximum, inflated by the choice. Here the choice is made on one half of the warm validation users
and scored on the other half (and the other way round), over ``--splits`` random halvings:

    honest margin = mean over splits of  recall_B(pair chosen on A) - co-click recall_B

beside the in-sample margin (the pair chosen and scored on all users, as the run reports it).
The run's validation-selected weights (its best checkpoint) are re-embedded on the val fold; the
epoch choice itself is not re-done (it is a second, smaller selection, also in-sample).

Usage:
    PYTHONPATH=src .venv/bin/python experiments/learned_recall/split_half_val.py \
        multirun/learned_recall/sage_next_click_confident/seed0 multirun/learned_recall/coclick_quota/seed0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import OmegaConf

from graphrecall.data.splits import make_folds
from graphrecall.metrics import recall_at_k


def per_setting_val_recall(run: Path) -> tuple[list[tuple], np.ndarray, np.ndarray, np.ndarray]:
    """(serving settings [S], val users [U], warm [U] bool, recall@50 [S, U]) of a run's best
    checkpoint on its val fold (warm: a click before the val cut)."""
    record = json.loads((run / "config_resolved.json").read_text())
    record.pop("choices", None)
    record.pop("git_revision", None)
    cfg = OmegaConf.create(record)
    dataset = instantiate(cfg.dataset.loader)
    fold = make_folds(dataset, OmegaConf.to_container(cfg.dataset.split), seed=int(cfg.seed))["val"]
    model = instantiate(cfg.model, _convert_="all")
    best = sorted((run / "checkpoints").glob("best-*.ckpt"))
    if not best:
        raise FileNotFoundError(f"{run}/checkpoints holds no best-*.ckpt")
    model.load_checkpoint(str(best[-1]), dataset)
    model.refit = False
    model.fit(fold, dataset, cache_dir=cfg.get("cache_dir"))  # re-embeds the val fold; chooses on all val users
    model.popularity_beta, model.min_score = None, None  # back to the grids (prior_weight: the run's own)
    settings = model.serving_settings()  # (beta, min_score, prior_weight) triples
    users, targets, context = model.fold_context(fold, dataset)
    recall = np.stack([recall_at_k(model.serve(users, context, 50, beta=b, min_score=m, prior_weight=w,
                                               slots=model.channels_off()).items, targets, 50)
                       for b, m, w in settings])
    warm = np.isin(users, fold.history["u"].to_numpy())
    return settings, users, warm, recall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="a *_confident run folder (train.py)")
    p.add_argument("coclick", type=Path, help="the co-click run of the same data and split")
    p.add_argument("--splits", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    settings, users, warm, recall = per_setting_val_recall(args.run)
    co = pd.read_parquet(args.coclick / "per_user_val.parquet").set_index("u")["recall@50"]
    hist = json.loads((args.run / "metrics.json").read_text())
    keep = warm & np.isin(users, co.index.to_numpy()) & ~np.isnan(recall).any(axis=0)
    recall, users = recall[:, keep], users[keep]
    co_u = co.reindex(users).to_numpy()
    in_sample = int(np.argmax(recall.mean(axis=1)))
    rng = np.random.default_rng(args.seed)
    margins = []
    for _ in range(args.splits):
        half = rng.permutation(len(users)) < len(users) // 2
        for a, b in ((half, ~half), (~half, half)):
            chosen = int(np.argmax(recall[:, a].mean(axis=1)))  # ties: the first setting, as the model does
            margins.append(recall[chosen, b].mean() - co_u[b].mean())
    margins = np.array(margins)
    print(json.dumps({
        "run": str(args.run), "users": int(len(users)), "settings": len(settings),
        "reported_val_warm_recall@50": hist["metrics"].get("val/warm/recall@50"),
        "in_sample_pair": list(settings[in_sample]), "in_sample_recall": float(recall[in_sample].mean()),
        "coclick_recall": float(co_u.mean()),
        "in_sample_margin": float(recall[in_sample].mean() - co_u.mean()),
        "split_half_margin": float(margins.mean()),
        "split_half_margin_2.5_97.5": [float(np.percentile(margins, 2.5)), float(np.percentile(margins, 97.5))],
    }, indent=2))


if __name__ == "__main__":
    main()
