"""GPU check of stage 1 at catalogue scale: 1M contents, ~20M weighted co-click edges, one GPU.

Phases (each bounded in steps and in seconds; the whole run targets < 10 minutes on one H200):

a. device: CUDA available, device name, memory (``--device cpu`` for a smoke test).
b. graph: a random power-law weighted content graph built directly in torch (no click
   generator): ``--nodes`` contents (default 1M), ``--edges`` raw directed edges (default 20M)
   whose endpoints follow Zipf-like popularities, duplicates merged, self-loops dropped, then each
   row's top-``--neighbors`` by weight kept (the stage-1 default, 10) and normalised into a
   :class:`~graphrecall.graphs.sampling.TopKGraph`; random side-info bags for 5 fields (style,
   space, designer: one value; products: 0-8 values; categories: 0-4 values).
c. train: the default stage-1 model (``SageI2IModule``: ``GNNEncoder`` mean aggregator, 2 layers,
   d=64, BCE with 5 sampled negatives per positive) driven by a Lightning ``Trainer``
   (``accelerator=gpu``), the project's training loader, timed per step after warm-up:

   - ``c1_default``: batch 1024 positive pairs, ``batching=auto`` (k-hop subgraphs at 1M nodes), the
     run's real configuration: steps/s, positive pairs/s, time per 1M positive pairs and the
     extrapolated time of one epoch over every top-k edge;
   - ``c2_full``: ``batching=full`` with ``--full-batch`` positives per step (default 200k, so
     200k positive + 1M negative pairs), the setting of the bare-PyG reference in
     ``shared/docs/stack-facts.md``: one step at 1M nodes / 20M edges, SAGE-mean, 108 ms, 7.6 GiB.

   Peak GPU memory is ``torch.cuda.max_memory_allocated`` per phase. The CPU time of drawing the
   negatives (``sample_negatives`` runs on the CPU graph with a CPU generator) is measured apart.
d. pool: every content's vector (``embed_all``), then the exact top-50 pool with
   ``graphrecall.recall.ann.exact_topk`` on the GPU, in bf16 and fp32 (stack-facts: ~9 s / ~16 s
   for bare PyTorch), and the overlap of the two top-50 lists on a sample of rows.

Results go to ``--out`` as JSON (default ``$OUT/gpu_stage1.json`` when ``OUT`` is set, else
``./gpu_stage1.json``).

Usage::

    python benchmarks/gpu_stage1.py                       # one GPU, full scale (~5-8 min)
    python benchmarks/gpu_stage1.py --dry-run             # CPU smoke test, scale 0.01, seconds
    python benchmarks/gpu_stage1.py --device cpu --scale 0.01
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

GIB = 2**30
REF_STEP_MS = 108.0  # bare PyG, SAGE-mean, 1M nodes / 20M edges, 1M pos + 1M neg pairs, one H200
REF_PEAK_GIB = 7.6
REF_TOPK_S = {"bf16": 9.0, "fp32": 16.0}
FIELDS = {  # name: (vocabulary, min values, max values)
    "style": (50, 1, 1), "space": (30, 1, 1), "designer": (4_000, 1, 1),
    "products": (30_000, 0, 8), "categories": (150, 0, 4),
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / GIB if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


# --------------------------------------------------------------------------- (b) data


def zipf_sample(n: int, size: int, exponent: float, gen: torch.Generator, device: torch.device) -> Tensor:
    """``size`` draws from ``n`` items with P(item of popularity rank r) ~ r^-exponent, ranks shuffled."""
    p = torch.arange(1, n + 1, device=device, dtype=torch.float64).pow_(-exponent)
    cdf = torch.cumsum(p, 0)
    cdf /= cdf[-1].clone()
    u = torch.rand(size, generator=gen, device=device, dtype=torch.float64)
    rank = torch.searchsorted(cdf, u).clamp_(max=n - 1)
    perm = torch.randperm(n, generator=gen, device=device)
    return perm[rank]


def power_law_topk_graph(n: int, e: int, k: int, seed: int, device: torch.device):
    """Random power-law weighted graph (``e`` raw edges) -> per-row top-``k`` :class:`TopKGraph` (CPU)."""
    from graphrecall.graphs.sampling import TopKGraph

    gen = torch.Generator(device=device).manual_seed(seed)
    src = zipf_sample(n, e, 0.8, gen, device)
    dst = zipf_sample(n, e, 0.9, gen, device)
    w = torch.rand(e, generator=gen, device=device, dtype=torch.float32) + 1e-3
    keep = src != dst
    key, inv = torch.unique(src[keep] * n + dst[keep], return_inverse=True)  # merge duplicate pairs
    wsum = torch.zeros(key.numel(), device=device, dtype=torch.float32).index_add_(0, inv, w[keep])
    del src, dst, w, keep, inv
    row, col = key // n, key % n
    raw_edges = int(key.numel())
    # one sort by (row asc, weight desc): weights are in (0, e], scale them into [0, 0.5)
    order = torch.argsort(row.double() + 0.5 * (1 - wsum.double() / (wsum.max().double() + 1)))
    row, col, wsum = row[order], col[order], wsum[order]
    deg = torch.bincount(row, minlength=n)
    start = torch.cumsum(deg, 0) - deg
    rank = torch.arange(row.numel(), device=device) - start[row]
    sel = rank < k
    row, col, wsum = row[sel], col[sel], wsum[sel]
    deg_k = torch.bincount(row, minlength=n)
    rowptr = torch.zeros(n + 1, dtype=torch.long, device=device)
    rowptr[1:] = torch.cumsum(deg_k, 0)
    rowsum = torch.zeros(n, device=device, dtype=torch.float64).index_add_(0, row, wsum.double())
    alpha = (wsum.double() / rowsum[row]).float()
    g = TopKGraph(rowptr.cpu(), col.cpu(), wsum.cpu(), alpha.cpu(), n)
    return g, raw_edges


def random_features(n: int, seed: int) -> dict:
    from graphrecall.models.features import FieldBags

    gen = torch.Generator().manual_seed(seed + 1)
    out = {}
    for name, (vocab, lo, hi) in FIELDS.items():
        counts = torch.randint(lo, hi + 1, (n,), generator=gen)
        indptr = torch.zeros(n + 1, dtype=torch.long)
        indptr[1:] = torch.cumsum(counts, 0)
        values = torch.randint(vocab, (int(indptr[-1]),), generator=gen)
        out[name] = FieldBags(indptr, values, vocab)
    return out


# --------------------------------------------------------------------------- (c) training


def make_module(graph, features, batching: str, seed: int):
    from graphrecall.models.sage import SageI2IModule

    encoder = {
        "field_sizes": {f: b.num_values for f, b in features.items()}, "field_dim": 32, "hidden_dim": 64,
        "num_layers": 2, "aggregator": "mean", "heads": 4, "num_nodes": graph.num_nodes, "dropout": 0.1,
        "normalize": False,
    }
    torch.manual_seed(seed)
    module = SageI2IModule(encoder, "bce", 5, 5e-3, 0.0, batching, seed=seed)
    module.attach(graph, features, None)
    return module


def make_loader(graph, batch_size: int, seed: int):
    from torch.utils.data import DataLoader

    from graphrecall.training import EpochSeededSampler, PairDataset, keep_batch

    positives = PairDataset(graph.row(), graph.col)
    return DataLoader(positives, batch_size=batch_size, sampler=EpochSeededSampler(len(positives), seed),
                      drop_last=False, collate_fn=keep_batch)


def step_timer(device: torch.device, budget_s: float):
    import pytorch_lightning as pl

    class StepTimer(pl.Callback):
        """Per-step wall time (synchronised); stops the run when its time budget is spent."""

        def __init__(self) -> None:
            self.times: list[float] = []
            self.t0 = 0.0
            self.start = time.perf_counter()

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            sync(device)
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            sync(device)
            self.times.append(time.perf_counter() - self.t0)
            if time.perf_counter() - self.start > budget_s:
                trainer.should_stop = True

    return StepTimer()


def train_phase(name: str, graph, features, batching: str, batch_size: int, steps: int, warmup: int,
                budget_s: float, device: torch.device, seed: int) -> dict[str, Any]:
    import pytorch_lightning as pl

    from graphrecall.graphs.sampling import sample_negatives

    module = make_module(graph, features, batching, seed)
    loader = make_loader(graph, batch_size, seed)
    reset_peak(device)
    timer = step_timer(device, budget_s)
    trainer = pl.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, max_epochs=1,
        max_steps=warmup + steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0, precision="32-true",
        deterministic=False, callbacks=[timer],
    )
    t0 = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    sync(device)
    fit_s = time.perf_counter() - t0
    timed = timer.times[warmup:] if len(timer.times) > warmup else timer.times[-1:]
    step_s = float(np.median(timed)) if timed else float("nan")
    # the CPU side of a step: drawing the negatives on the CPU graph (inside step_s above)
    src = graph.row()[torch.randint(graph.num_edges, (batch_size,), generator=torch.Generator().manual_seed(1))]
    gen = torch.Generator().manual_seed(2)
    sample_negatives(graph, src, 5, gen)  # warm (sorted-key cache)
    t = time.perf_counter()
    for _ in range(3):
        sample_negatives(graph, src, 5, gen)
    neg_s = (time.perf_counter() - t) / 3
    full = bool(module._full_graph())
    res = {
        "phase": name, "batching": batching, "full_graph": full, "batch_positives": batch_size,
        "negatives_per_positive": 5, "steps_run": len(timer.times), "warmup_steps": warmup,
        "steps_timed": len(timed), "fit_seconds": fit_s, "step_ms_median": 1000 * step_s,
        "step_ms_mean": 1000 * float(np.mean(timed)) if timed else None,
        "step_ms_p90": 1000 * float(np.percentile(timed, 90)) if timed else None,
        "steps_per_s": 1 / step_s, "positive_pairs_per_s": batch_size / step_s,
        "scored_pairs_per_s": 6 * batch_size / step_s,
        "message_edges_per_step": graph.num_edges if full else None,
        "seconds_per_1M_positive_pairs": 1e6 / batch_size * step_s,
        "epoch_seconds_extrapolated": graph.num_edges / batch_size * step_s,
        "cpu_negatives_ms_per_step": 1000 * neg_s,
        "peak_gpu_gib": peak_gib(device),
        "stopped_by_budget": len(timer.times) < warmup + steps,
    }
    if full:
        res["message_edges_per_s"] = graph.num_edges * 2 / step_s  # 2 layers, forward
    return res


# --------------------------------------------------------------------------- (d) pool


def pool_phase(graph, features, device: torch.device, k: int, chunk: int, seed: int,
               dtypes: list[str], budget_s: float) -> dict[str, Any]:
    from graphrecall.recall.ann import exact_topk

    module = make_module(graph, features, "auto", seed).to(device)
    reset_peak(device)
    t0 = time.perf_counter()
    vectors = module.embed_all()
    sync(device)
    out: dict[str, Any] = {"embed_all_seconds": time.perf_counter() - t0, "embed_peak_gpu_gib": peak_gib(device),
                           "k": k, "chunk_size": chunk}
    pools = {}
    start = time.perf_counter()
    for name in dtypes:
        if time.perf_counter() - start > budget_s:
            out[f"{name}_skipped"] = "time budget spent"
            continue
        v = vectors.to(torch.bfloat16 if name == "bf16" else torch.float32)
        reset_peak(device)
        sync(device)
        t = time.perf_counter()
        pools[name] = exact_topk(v, k, chunk_size=chunk)
        sync(device)
        out[f"{name}_seconds"] = time.perf_counter() - t
        out[f"{name}_peak_gpu_gib"] = peak_gib(device)
        out[f"{name}_reference_seconds"] = REF_TOPK_S[name]
        log(f"  exact top-{k} {name}: {out[f'{name}_seconds']:.1f} s (reference bare PyTorch on H200 "
            f"~{REF_TOPK_S[name]:.0f} s)")
    if len(pools) == 2:
        rows = np.random.default_rng(seed).choice(graph.num_nodes, size=min(10_000, graph.num_nodes), replace=False)
        a, b = pools["bf16"].neighbors[rows], pools["fp32"].neighbors[rows]
        overlap = np.mean([len(np.intersect1d(x, y)) / k for x, y in zip(a, b)])
        out["bf16_vs_fp32_top_k_overlap"] = float(overlap)
    return out


# --------------------------------------------------------------------------- main


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda | cpu")
    p.add_argument("--scale", type=float, default=1.0, help="nodes = 1M x scale, raw edges = 20M x scale")
    p.add_argument("--dry-run", action="store_true", help="CPU smoke test: --device cpu --scale 0.01, few steps")
    p.add_argument("--nodes", type=int, default=None)
    p.add_argument("--edges", type=int, default=None)
    p.add_argument("--neighbors", type=int, default=10, help="top-k neighbours per node (stage-1 default 10)")
    p.add_argument("--steps", type=int, default=100, help="timed steps of c1_default")
    p.add_argument("--full-steps", type=int, default=20, help="timed steps of c2_full")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch", type=int, default=1024, help="positives per step, c1_default")
    p.add_argument("--full-batch", type=int, default=200_000, help="positives per step, c2_full")
    p.add_argument("--phases", nargs="+", default=["c1", "c2", "d"], choices=["c1", "c2", "d"])
    p.add_argument("--pool-k", type=int, default=50)
    p.add_argument("--pool-chunk", type=int, default=4096)
    p.add_argument("--pool-dtypes", nargs="+", default=["bf16", "fp32"], choices=["bf16", "fp32"])
    p.add_argument("--phase-budget", type=float, default=120.0, help="seconds per training phase")
    p.add_argument("--pool-budget", type=float, default=90.0, help="seconds before a further pool dtype is skipped")
    p.add_argument("--time-limit", type=float, default=540.0, help="skip phases that would start after this")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    if args.dry_run:
        args.device, args.scale = "cpu", min(args.scale, 0.01)
        args.steps, args.full_steps, args.warmup = min(args.steps, 3), min(args.full_steps, 2), 1
        args.full_batch = min(args.full_batch, 2_000)
    n = args.nodes or int(1_000_000 * args.scale)
    e = args.edges or int(20_000_000 * args.scale)
    out_path = Path(args.out or (Path(os.environ["OUT"]) / "gpu_stage1.json" if os.environ.get("OUT")
                                 else "gpu_stage1.json"))
    t_start = time.perf_counter()

    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import pytorch_lightning as pl

    # (a) device
    results: dict[str, Any] = {"args": vars(args), "nodes": n, "raw_edges_requested": e, "phases": {}}
    if args.device == "cuda" and not torch.cuda.is_available():
        log("CUDA is not available: run with --device cpu (or --dry-run) for a CPU smoke test")
        results["error"] = "cuda not available"
        out_path.write_text(json.dumps(results, indent=2))
        return 2
    device = torch.device(args.device)
    info = {"python": platform.python_version(), "torch": torch.__version__, "lightning": pl.__version__,
            "cuda_available": torch.cuda.is_available(), "device": str(device), "cpu_threads": torch.get_num_threads()}
    if device.type == "cuda":
        prop = torch.cuda.get_device_properties(device)
        info.update(device_name=prop.name, device_memory_gib=prop.total_memory / GIB, cuda=torch.version.cuda)
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 in the pool comparison
    results["device"] = info
    log(f"device: {info}")

    def save() -> None:
        results["total_seconds"] = time.perf_counter() - t_start
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(results, indent=2, default=float))

    # (b) graph + side info
    t = time.perf_counter()
    graph, raw_edges = power_law_topk_graph(n, e, args.neighbors, args.seed, device)
    sync(device)
    features = random_features(n, args.seed)
    deg = graph.degree()
    results["graph"] = {
        "seconds": time.perf_counter() - t, "nodes": n, "raw_edges_after_merge": raw_edges,
        "topk_edges": graph.num_edges, "neighbors": args.neighbors, "isolated_nodes": graph.isolated(),
        "max_degree": int(deg.max()), "mean_degree": float(deg.float().mean()),
        "feature_values": {f: int(b.values.numel()) for f, b in features.items()},
    }
    log(f"graph: {results['graph']}")
    save()

    phases = [("c1", "c1_default", "auto", args.batch, args.steps),
              ("c2", "c2_full", "full", args.full_batch, args.full_steps)]
    for key, name, batching, batch, steps in phases:
        if key not in args.phases:
            continue
        if time.perf_counter() - t_start > args.time_limit:
            results["phases"][name] = {"skipped": "time limit"}
            continue
        log(f"{name}: batching={batching}, {batch} positives/step, {args.warmup}+{steps} steps")
        try:
            res = train_phase(name, graph, features, batching, batch, steps, args.warmup, args.phase_budget,
                              device, args.seed)
        except torch.OutOfMemoryError as exc:  # report and go on with the next phase
            res = {"phase": name, "error": f"out of memory: {str(exc)[:300]}"}
        if "step_ms_median" in res and name == "c2_full":
            res["reference_step_ms"] = REF_STEP_MS
            res["reference_peak_gib"] = REF_PEAK_GIB
            res["ratio_to_reference_step"] = res["step_ms_median"] / REF_STEP_MS
        results["phases"][name] = res
        log(f"  {json.dumps({k: v for k, v in res.items()}, default=float)}")
        save()

    if "d" in args.phases:
        if time.perf_counter() - t_start > args.time_limit:
            results["phases"]["d_pool"] = {"skipped": "time limit"}
        else:
            log(f"d_pool: embed_all + exact top-{args.pool_k} ({', '.join(args.pool_dtypes)})")
            try:
                results["phases"]["d_pool"] = pool_phase(graph, features, device, args.pool_k, args.pool_chunk,
                                                         args.seed, args.pool_dtypes, args.pool_budget)
            except torch.OutOfMemoryError as exc:
                results["phases"]["d_pool"] = {"error": f"out of memory: {str(exc)[:300]}"}
            log(f"  {results['phases']['d_pool']}")
        save()

    # summary
    print("\n== gpu_stage1 summary ==")
    print(f"device {info.get('device_name', info['device'])}; graph {n:,} nodes, {raw_edges:,} raw edges, "
          f"{graph.num_edges:,} top-{args.neighbors} edges (built in {results['graph']['seconds']:.1f} s)")
    for name, res in results["phases"].items():
        if "step_ms_median" in res:
            peak = res["peak_gpu_gib"]
            print(f"  {name:11s} {res['step_ms_median']:8.1f} ms/step  {res['positive_pairs_per_s']:12,.0f} pos pairs/s  "
                  f"{res['seconds_per_1M_positive_pairs']:7.2f} s per 1M positives  epoch ~{res['epoch_seconds_extrapolated']:8.1f} s  "
                  f"CPU negatives {res['cpu_negatives_ms_per_step']:.1f} ms/step  peak "
                  + (f"{peak:.2f} GiB" if peak is not None else "n/a (cpu)"))
            if "reference_step_ms" in res:
                print(f"  {'':11s} vs bare-PyG reference {REF_STEP_MS:.0f} ms/step, {REF_PEAK_GIB} GiB "
                      f"(1M pos + 1M neg pairs, 20M message edges): ratio {res['ratio_to_reference_step']:.2f}")
        elif name == "d_pool":
            print(f"  d_pool      embed_all {res.get('embed_all_seconds', float('nan')):.1f} s; "
                  + "; ".join(f"{d} top-{args.pool_k} {res[f'{d}_seconds']:.1f} s (ref ~{REF_TOPK_S[d]:.0f} s)"
                              for d in args.pool_dtypes if f"{d}_seconds" in res)
                  + (f"; bf16/fp32 overlap {res['bf16_vs_fp32_top_k_overlap']:.3f}"
                     if "bf16_vs_fp32_top_k_overlap" in res else ""))
        else:
            print(f"  {name}: {res}")
    save()
    print(f"results: {out_path}  (total {results['total_seconds']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
