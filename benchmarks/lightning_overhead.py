"""Benchmark: Lightning ``Trainer`` vs a bare PyTorch loop, one training epoch of ``SageI2IModule``.

Both paths run in the same process, on the same top-k content graph, the same ``DataLoader``
(``EpochSeededSampler``, batch size 1024), the same module code and the same optimizer:

* ``lightning``: ``pl.Trainer(max_epochs=1)`` with no validation, no checkpointing, no logger,
  no progress bar, no model summary; ``trainer.fit(module, loader)``;
* ``bare``: ``module.configure_optimizers()``, then ``module.on_train_epoch_start()`` and for every
  batch ``loss = module.training_step(batch, i)``; ``zero_grad(set_to_none=True)``; ``backward``;
  ``step``. ``self.log`` is disabled in this path (there is no trainer to log to), so the metric
  bookkeeping of ``self.log`` counts as Lightning overhead.

Every measurement starts from a copy of the same initial weights; both paths draw the same
negatives and dropout masks (seeded from seed + epoch + batch index), so their final weights must
agree, which is checked and printed (``max |w_lightning - w_bare|``).

Two workloads (the design brief's stage-1 defaults: 2 layers, d=64, mean aggregator, BCE with 5
negatives, top-10 neighbours):

* ``small``: synthetic ``small`` preset (2k contents), content co-click graph of the last 15 days
  (tau 0.001), batching ``auto`` (full-graph passes);
* ``medium``: synthetic ``medium`` preset (20k contents), same graph recipe, ``batching=subgraph``
  forced (k-hop subgraphs per batch).

After one warm-up of each path, each path is timed ``--repeats`` times (default 3) alternating the
order (L,B / B,L / L,B), and the median is reported: the whole ``Trainer(...) + fit()`` wall time
(what one ``max_epochs=1`` run costs) and the epoch loop alone (``on_train_epoch_start`` to
``on_train_epoch_end``, which is what every further epoch of a longer run costs). Target (issue):
Lightning overhead <= 10%, printed as PASS / FAIL.

Usage::

    python benchmarks/lightning_overhead.py                    # small + medium
    python benchmarks/lightning_overhead.py --workloads small
    python benchmarks/lightning_overhead.py --limit-batches 50 --json out.json
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import platform
import statistics
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

TARGET_OVERHEAD = 0.10
DAY = 86_400


@dataclass
class Workload:
    name: str
    preset: str
    batching: str
    graph: Any = None
    features: Any = None
    positives: int = 0
    build_seconds: float = 0.0


def build_workload(name: str, preset: str, batching: str, window_days: float, tau: float, k: int,
                   seed: int) -> Workload:
    from graphrecall.data.schema import TIMESTAMP
    from graphrecall.data.splits import encode_clicks
    from graphrecall.data.synthetic import generate_home_feed
    from graphrecall.graphs.sampling import top_k_graph
    from graphrecall.graphs.views import build_view_graph
    from graphrecall.models.features import content_features

    t0 = time.perf_counter()
    ds = generate_home_feed(preset, seed=seed)
    clicks = encode_clicks(ds)
    ts = clicks[TIMESTAMP].to_numpy(np.int64)
    window = clicks[ts >= int(ts.max()) + 1 - int(window_days * DAY)]
    wg = build_view_graph(window, ds, "content", tau=tau)
    graph = top_k_graph(wg.weights, k)
    features = content_features(ds)
    return Workload(name, preset, batching, graph, features, graph.num_edges, time.perf_counter() - t0)


def make_module(w: Workload, seed: int):
    from graphrecall.models.sage import SageI2IModule

    encoder = {
        "field_sizes": {f: b.num_values for f, b in w.features.items()},
        "field_dim": 32, "hidden_dim": 64, "num_layers": 2, "aggregator": "mean", "heads": 4,
        "num_nodes": w.graph.num_nodes, "dropout": 0.1, "normalize": False,
    }
    torch.manual_seed(seed)
    module = SageI2IModule(encoder, "bce", 5, 5e-3, 0.0, w.batching, seed=seed)
    module.attach(w.graph, w.features, None)
    return module


def make_loader(w: Workload, batch_size: int, seed: int, kind: str = "pairs"):
    """The training loader of ``SageRecall._train`` (``pairs``), or the per-pair ``TensorDataset`` +
    ``default_collate`` loader it replaced (``tensor``: same batches, one index per pair)."""
    from torch.utils.data import DataLoader, TensorDataset

    from graphrecall.training import EpochSeededSampler, PairDataset, keep_batch

    if kind == "tensor":
        positives = TensorDataset(w.graph.row(), w.graph.col)
        return DataLoader(positives, batch_size=batch_size, sampler=EpochSeededSampler(len(positives), seed),
                          drop_last=False)
    positives = PairDataset(w.graph.row(), w.graph.col)
    return DataLoader(positives, batch_size=batch_size, sampler=EpochSeededSampler(len(positives), seed),
                      drop_last=False, collate_fn=keep_batch)


class EpochTimer:
    """A Lightning callback timing the epoch loop (``on_train_epoch_start`` -> ``on_train_epoch_end``)."""

    def __new__(cls):
        import pytorch_lightning as pl

        class _Timer(pl.Callback):
            def __init__(self) -> None:
                self.start = self.end = 0.0
                self.steps = 0

            def on_train_epoch_start(self, trainer, pl_module) -> None:
                self.start = time.perf_counter()

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
                self.steps += 1

            def on_train_epoch_end(self, trainer, pl_module) -> None:
                self.end = time.perf_counter()

        return _Timer()


def run_lightning(template, loader, limit_batches: int | None, deterministic: bool) -> dict[str, Any]:
    import pytorch_lightning as pl

    module = copy.deepcopy(template)
    timer = EpochTimer()
    t0 = time.perf_counter()
    trainer = pl.Trainer(
        max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
        deterministic=deterministic, precision="32-true", callbacks=[timer],
        limit_train_batches=limit_batches if limit_batches else 1.0,
    )
    trainer.fit(module, train_dataloaders=loader)
    total = time.perf_counter() - t0
    return {"total_seconds": total, "epoch_seconds": timer.end - timer.start, "steps": timer.steps,
            "module": module}


def run_bare(template, loader, limit_batches: int | None) -> dict[str, Any]:
    module = copy.deepcopy(template)
    module.log = lambda *args, **kwargs: None  # no trainer to log to; the bookkeeping is Lightning's
    t0 = time.perf_counter()
    optimizer = module.configure_optimizers()
    module.train()
    torch.set_grad_enabled(True)
    loader.sampler.set_epoch(0)
    start = time.perf_counter()
    module.on_train_epoch_start()
    steps = 0
    for i, batch in enumerate(loader):
        if limit_batches and i >= limit_batches:
            break
        loss = module.training_step(batch, i)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps += 1
    module.on_train_epoch_end()
    end = time.perf_counter()
    return {"total_seconds": end - t0, "epoch_seconds": end - start, "steps": steps, "module": module}


def max_weight_diff(a, b) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    return max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa) if sa else 0.0


def verdict(ratio: float) -> str:
    return "PASS" if ratio - 1.0 <= TARGET_OVERHEAD else "FAIL"


def bench_workload(w: Workload, args: argparse.Namespace) -> dict[str, Any]:
    template = make_module(w, args.seed)
    loader = make_loader(w, args.batch_size, args.seed, args.loader)
    limit = args.limit_batches
    # warm-up: a short pass of each path (allocator, lazy imports, Lightning's first-use costs)
    warm = args.warmup_batches or limit
    run_lightning(template, loader, warm, args.deterministic)
    run_bare(template, loader, warm)

    runs: dict[str, list[dict[str, Any]]] = {"lightning": [], "bare": []}
    diffs = []
    for r in range(args.repeats):
        order = ("lightning", "bare") if r % 2 == 0 else ("bare", "lightning")
        pair = {}
        for path in order:
            res = run_lightning(template, loader, limit, args.deterministic) if path == "lightning" \
                else run_bare(template, loader, limit)
            pair[path] = res
            runs[path].append({k: v for k, v in res.items() if k != "module"})
            print(f"  [{w.name}] repeat {r + 1} {path:9s}: fit {res['total_seconds']:7.3f} s, "
                  f"epoch loop {res['epoch_seconds']:7.3f} s, {res['steps']} steps", flush=True)
        diffs.append(max_weight_diff(pair["lightning"]["module"], pair["bare"]["module"]))

    def med(path: str, key: str) -> float:
        return statistics.median(x[key] for x in runs[path])

    steps = runs["bare"][0]["steps"]
    pairs = min(w.positives, steps * args.batch_size)
    out = {
        "workload": w.name, "preset": w.preset, "batching": w.batching,
        "full_graph": bool(template._full_graph()),
        "nodes": w.graph.num_nodes, "topk_edges": w.graph.num_edges, "positives_per_epoch": pairs,
        "steps_per_epoch": steps, "build_seconds": w.build_seconds, "repeats": args.repeats,
        "max_weight_diff_lightning_vs_bare": max(diffs),
        "runs": runs,
    }
    for path in ("lightning", "bare"):
        out[f"{path}_fit_seconds"] = med(path, "total_seconds")
        out[f"{path}_epoch_seconds"] = med(path, "epoch_seconds")
        out[f"{path}_steps_per_s"] = steps / out[f"{path}_epoch_seconds"]
        out[f"{path}_pos_edges_per_s"] = pairs / out[f"{path}_epoch_seconds"]
    out["ratio_fit"] = out["lightning_fit_seconds"] / out["bare_fit_seconds"]
    out["ratio_epoch"] = out["lightning_epoch_seconds"] / out["bare_epoch_seconds"]
    out["verdict_fit"] = verdict(out["ratio_fit"])
    out["verdict_epoch"] = verdict(out["ratio_epoch"])
    return out


def report(res: dict[str, Any]) -> str:
    lines = [
        f"== {res['workload']}: preset {res['preset']}, batching {res['batching']} "
        f"({'full-graph passes' if res['full_graph'] else 'k-hop subgraphs'}), {res['nodes']:,} nodes, "
        f"{res['topk_edges']:,} top-k edges = positives/epoch {res['positives_per_epoch']:,}, "
        f"{res['steps_per_epoch']} steps (data+graph build {res['build_seconds']:.1f} s, not timed)",
        f"   {'path':10s} {'fit() s':>9s} {'epoch s':>9s} {'steps/s':>9s} {'pos edges/s':>12s}",
    ]
    for path in ("lightning", "bare"):
        lines.append(f"   {path:10s} {res[f'{path}_fit_seconds']:9.3f} {res[f'{path}_epoch_seconds']:9.3f} "
                     f"{res[f'{path}_steps_per_s']:9.2f} {res[f'{path}_pos_edges_per_s']:12,.0f}")
    lines += [
        f"   ratio Lightning/bare, whole fit (Trainer + fit, 1 epoch): {res['ratio_fit']:.3f} "
        f"(overhead {100 * (res['ratio_fit'] - 1):+.1f}%)  target <= {100 * TARGET_OVERHEAD:.0f}%: {res['verdict_fit']}",
        f"   ratio Lightning/bare, epoch loop only:                    {res['ratio_epoch']:.3f} "
        f"(overhead {100 * (res['ratio_epoch'] - 1):+.1f}%)  target <= {100 * TARGET_OVERHEAD:.0f}%: {res['verdict_epoch']}",
        f"   same code check: max |w_lightning - w_bare| after the epoch = {res['max_weight_diff_lightning_vs_bare']:.2e}",
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workloads", nargs="+", default=["small", "medium"], choices=["small", "medium"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=4096)  # conf/model/sage.yaml default
    p.add_argument("--limit-batches", type=int, default=None, help="time only this many batches per epoch")
    p.add_argument("--warmup-batches", type=int, default=20, help="batches of the warm-up pass (0: full epoch)")
    p.add_argument("--window-days", type=float, default=15)
    p.add_argument("--tau", type=float, default=0.001)
    p.add_argument("--neighbors", type=int, default=50)  # conf/model/sage.yaml default
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-deterministic", dest="deterministic", action="store_false",
                   help="the project's CPU trainer config sets deterministic=true; this turns it off in both paths")
    p.add_argument("--loader", choices=["pairs", "tensor"], default="pairs",
                   help="pairs: the project's batched PairDataset loader; tensor: the per-pair TensorDataset one")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args()

    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if args.threads:
        torch.set_num_threads(args.threads)
    # Lightning's Trainer(deterministic=...) sets this process-wide; set it up front so that the
    # bare loop runs under the same flag whichever path goes first.
    torch.use_deterministic_algorithms(args.deterministic)
    import pytorch_lightning as pl

    print(f"lightning_overhead: python {platform.python_version()}, torch {torch.__version__}, "
          f"pytorch_lightning {pl.__version__}, {torch.get_num_threads()} torch threads, "
          f"{os.cpu_count()} cpus, deterministic={args.deterministic}, loader={args.loader}, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    specs = {"small": ("small", "auto"), "medium": ("medium", "subgraph")}
    results = []
    for name in args.workloads:
        preset, batching = specs[name]
        w = build_workload(name, preset, batching, args.window_days, args.tau, args.neighbors, args.seed)
        print(f"[{name}] built {preset} graph in {w.build_seconds:.1f} s: {w.graph.num_nodes:,} nodes, "
              f"{w.graph.num_edges:,} top-{args.neighbors} edges", flush=True)
        res = bench_workload(w, args)
        results.append(res)
        print(report(res), flush=True)
    print("\nSummary (target: Lightning overhead <= 10%)")
    for res in results:
        print(f"  {res['workload']:7s} fit {res['ratio_fit']:.3f} {res['verdict_fit']}   "
              f"epoch loop {res['ratio_epoch']:.3f} {res['verdict_epoch']}   "
              f"bare {res['bare_steps_per_s']:.1f} steps/s, {res['bare_pos_edges_per_s']:,.0f} pos edges/s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2, default=float)


if __name__ == "__main__":
    main()
