"""Benchmark: offline i2i candidate pool, exact torch search vs faiss flat vs faiss HNSW.

Builds the top-``k`` inner-product neighbours of ``N`` random ``d``-dimensional vectors (the
offline pool of the design brief, section 2) three ways, with :func:`graphrecall.recall.ann.build_pool`:

* ``exact``: chunked torch matmul + topk (:func:`exact_topk`);
* ``faiss``: faiss ``IndexFlatIP`` (exact, same results);
* ``hnsw``: faiss ``IndexHNSWFlat`` with inner product (approximate); its recall against exact
  search is measured on a sample of up to 2,000 query rows (not included in its seconds).

Prints seconds, the ratio to exact (>1 = slower than exact) and the agreement with exact.

Usage::

    python benchmarks/pool_build.py                 # N=100,000, d=64, k=50
    python benchmarks/pool_build.py --n 20000
    python benchmarks/pool_build.py --n 20000 --M 16 --ef-search 64
"""

from __future__ import annotations

import argparse
import os
import platform

import numpy as np
import torch

from graphrecall.recall.ann import build_pool, pool_recall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="number of vectors")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--M", type=int, default=32, help="HNSW graph degree")
    ap.add_argument("--ef-search", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    print(f"N={args.n:,} d={args.dim} k={args.k} | {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cpus, torch threads {torch.get_num_threads()}")
    vectors = torch.from_numpy(np.random.default_rng(args.seed).standard_normal((args.n, args.dim), dtype=np.float32))

    exact, info_exact = build_pool(vectors, args.k, method="exact")
    flat, info_flat = build_pool(vectors, args.k, method="faiss")
    hnsw, info_hnsw = build_pool(vectors, args.k, method="hnsw", M=args.M, ef_search=args.ef_search)

    base = info_exact["seconds"]
    print(f"{'method':<22}{'seconds':>10}{'vs exact':>10}  recall@{args.k} vs exact")
    rows = [
        ("exact (torch)", info_exact["seconds"], "1 (reference)"),
        ("faiss IndexFlatIP", info_flat["seconds"], f"{pool_recall(flat, exact):.4f} (all rows)"),
        (f"hnsw M={args.M} ef={args.ef_search}", info_hnsw["seconds"],
         f"{info_hnsw['recall']:.4f} ({info_hnsw['recall_queries']:,} query rows, "
         f"checked in {info_hnsw['recall_seconds']:.1f} s)"),
    ]
    for name, sec, recall in rows:
        print(f"{name:<22}{sec:>10.2f}{sec / base:>9.2f}x  {recall}")


if __name__ == "__main__":
    main()
