"""Why a run's pool collapses onto hubs (issue 27): its saved pool beside the pool its content vectors
give by plain similarity, without the learned popularity term.

A next-click pool ranks each trigger's row by ``<h_t, h_c> / T + b_c`` (``model.popularity``): ``b_c``
is the same in every row, so where it outweighs the inner products every row holds the same popular
contents. The run folder holds both halves: ``pool.parquet`` (the served pool, popularity term
included) and ``content_vectors.npy`` (the vectors ``h``, the same fold). Ranking the vectors by
inner product alone (what ``recall.channels.*.score=similarity`` does for a channel) separates the
two causes: a similarity pool that spreads while the served one collapses puts the collapse on the
popularity term; both collapsed puts it on the vectors (hub-bound neighbourhoods, too few epochs).

Prints, for both pools, :func:`graphrecall.metrics.pool_health` of the first 10 entries, and the mean
pairwise cosine of the vectors (a run without vectors, e.g. co-click: its pool alone).

Usage: python experiments/scale/pool_diagnosis.py <run dir> [<run dir> ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from graphrecall.metrics import mean_pairwise_cosine, pool_health
from graphrecall.recall.ann import exact_topk
from graphrecall.recall.pool import CandidatePool


def diagnose(run: Path) -> dict[str, dict[str, float]]:
    """Pool health of the served pool and, where the run saved content vectors (GNN models), of the
    similarity pool of those vectors, with their mean cosine."""
    frame = pd.read_parquet(run / "pool.parquet")
    vector_path = run / "content_vectors.npy"
    vectors = np.load(vector_path).astype(np.float32) if vector_path.exists() else None
    named = frame[["content_id", "neighbour_id"]].to_numpy()
    num_contents = len(vectors) if vectors is not None else int(named.max()) + 1
    if not np.issubdtype(named.dtype, np.integer) or named.min() < 0 or named.max() >= num_contents:
        raise ValueError(f"{run}: pool.parquet's content ids are not the rows 0..{num_contents - 1} of "
                         "content_vectors.npy (this diagnosis reads synthetic runs, whose ids are their rows)")
    served = CandidatePool.from_frame(frame, np.arange(num_contents), str(run / "pool.parquet"))  # ids are rows
    out = {"served pool": pool_health(served.neighbors)}
    if vectors is not None:
        rows = np.flatnonzero(served.neighbors[:, 0] >= 0)  # the pool's candidate rows (contents it may recommend)
        similarity = exact_topk(torch.from_numpy(vectors), 10, columns=rows)
        out["similarity pool (no popularity term)"] = pool_health(similarity.neighbors[rows])
        out["vectors"] = {"mean_cosine": mean_pairwise_cosine(vectors), "contents": float(len(vectors))}
    return out


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit(__doc__.split("Usage: ")[1])
    for arg in argv:
        for name, values in diagnose(Path(arg)).items():
            print(f"{arg} | {name} | " + ", ".join(f"{k} {v:.6g}" for k, v in values.items()))


if __name__ == "__main__":
    main(sys.argv[1:])
