"""Benchmark: stage-1 subgraph training steps with layer trimming and sparse aggregation on and off, in one process
(issue 27, item 1).

Four settings train the same module (a copy of the same initial weights) on the same first
``--steps`` batches of epoch 0, drawn as ``train.py`` draws them (the config composed from conf/
with ``model.sampling.batching=subgraph`` forced, plus any overrides given), in a bare loop:
``training_step``, ``zero_grad``, ``backward``, ``step``:

* ``trim=off sparse=off``: the original path (every layer over the whole subgraph, one message per
  edge), the baseline every ratio is taken against;
* ``trim=on sparse=off``: layer trimming alone (``model.sampling.trim_layers``);
* ``trim=off sparse=on``: sparse aggregation alone (``model.sampling.sparse_aggregation``: one
  CSR adjacency product per mean / sum layer instead of one message per edge);
* ``trim=on sparse=on``: both (today's defaults).

(``--only-ends``: the first and the last only.) One warm-up step each, then ``--repeats`` rounds
alternating the order (forward, backward, ...); each setting's median:

* ``steps/s``: the steps alone (negatives, subgraph, both layers, loss, backward, Adam), by the
  wall clock; ``steps/CPU s``: by the process's CPU time (user + system), which other jobs on a
  shared machine disturb less (with one thread and free cores the two agree);
* ``peak MiB``: on the CPU the process's peak resident memory over the steps minus its resident
  memory before them (freed heap returned with ``malloc_trim``, then the peak reset through
  ``/proc/self/clear_refs``), on a GPU ``torch.cuda.max_memory_allocated`` over the steps minus
  the memory allocated before;
* ``max |w - w_original|`` after the steps: neither switch changes a result. Trimming gives 0;
  the sparse product sums each row in another order, so the first step's gradients differ by
  float rounding (~1e-8 at ``medium``), which Adam's sign-like steps and 20 steps of training
  lift to ~1e-2 in the weights: as much as the original path differs from itself when its
  edges are summed in a shuffled order (checked once at ``medium``, 20 steps: 1.4e-2 with
  ``model=sage``, 3.8e-2 with ``model=sage_next_click``). Outputs and gradients are tested
  equal in tests/test_sparse_aggregation.py.

Also printed: the mean subgraph of a step (nodes and edges per hop) and the share of the
message-passing edges that trimming skips. Target (issue 27): steps/s of both switches on at least
1.7x the original path, printed as PASS / FAIL. What bounds each switch: trimming drops the last
layer's edges into non-seed rows, so alone it gives about 1 / (1 - skipped share), never more than
2x, and little when a batch's seeds already cover most of the graph (the article's 5 uniform
negatives per pair over 20k contents); sparse aggregation removes the ``[E, d]`` message tensor
(gather, multiply, scatter and their backward), the bulk of a CPU step, leaving the side-info
encoder, the dense layers, the loss and the sampling. The CPU peak is resident memory, so the
allocator's reuse of freed memory moves it by some tens of MiB.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/layer_trimming.py                         # medium, 20 steps, 3 repeats
    OMP_NUM_THREADS=1 python benchmarks/layer_trimming.py model=sage_next_click
    OMP_NUM_THREADS=1 python benchmarks/layer_trimming.py --preset large --steps 10 --only-ends \
        "model.sampling.fanouts=[10,5]"
    python benchmarks/layer_trimming.py --preset small --steps 5 --repeats 1 aggregator=gat --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import json
import platform
import statistics
import sys
import time
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
TARGET_SPEEDUP = 1.7
Setting = tuple[bool, bool]  # (trim_layers, sparse_aggregation)
ORIGINAL: Setting = (False, False)
BOTH: Setting = (True, True)
SETTINGS: list[Setting] = [ORIGINAL, (True, False), (False, True), BOTH]


def setting_name(setting: Setting) -> str:
    trim, sparse = setting
    return f"trim={'on' if trim else 'off'} sparse={'on' if sparse else 'off'}"


def compose(preset: str, overrides: list[str], data_dir: str) -> Any:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import open_dict

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = hydra_compose("train", overrides=["dataset=synthetic", f"dataset.loader.preset={preset}", "model=sage",
                                                "model.sampling.batching=subgraph", *overrides])
    with open_dict(cfg):
        cfg.data_dir = data_dir
        cfg.cache_dir = str(Path(data_dir) / "cache")
    return cfg


def prepare(cfg: Any, steps: int) -> tuple[Any, list, dict[str, Any]]:
    """The module ``train.py`` would train on the validation fold and its first ``steps`` batches."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from graphrecall.data.splits import make_folds
    from graphrecall.models.cold_start import unclicked_contents

    t0 = time.perf_counter()
    dataset = instantiate(cfg.dataset.loader)
    fold = make_folds(dataset, OmegaConf.to_container(cfg.dataset.split, resolve=True), seed=int(cfg.seed))["val"]
    data_seconds = time.perf_counter() - t0
    model = instantiate(cfg.model, _convert_="all")
    model.candidate_rows = None
    model.unclicked_rows = unclicked_contents(fold.train["i"].to_numpy(), dataset.num_contents)
    model.fold_published = model.publication_days(fold, dataset)
    t0 = time.perf_counter()
    _, topk, features = model._graph_and_features(fold, dataset, cfg.get("cache_dir"))
    graph_seconds = time.perf_counter() - t0
    torch.manual_seed(int(cfg.seed))
    module = model.build_module(dataset, features)
    module.attach(topk, features, None)
    module.attach_popularity(model.popularity_table(fold, dataset), model.fold_published)
    module.attach_cold_start(model.unclicked_rows)
    examples, module.log_q = model.training_examples(fold, topk)
    loader = model._loader(examples)
    loader.sampler.set_epoch(0)
    batches = list(islice(iter(loader), steps + 1))  # + one warm-up step
    info = {"contents": dataset.num_contents, "topk_edges": topk.num_edges, "examples": len(examples),
            "batch_size": int(cfg.model.optim.batch_size), "data_seconds": data_seconds,
            "graph_seconds": graph_seconds, "model": type(module).__name__}
    return module, batches, info


@contextlib.contextmanager
def recorded_subgraphs() -> Iterator[list]:
    """Records ``(num_nodes_per_hop, num_edges_per_hop)`` of every subgraph the stage-1 module samples."""
    import graphrecall.models.sage as sage

    original, seen = sage.k_hop_subgraph, []

    def recording(*args: Any, **kwargs: Any):
        sub = original(*args, **kwargs)
        seen.append((list(sub.num_nodes_per_hop), list(sub.num_edges_per_hop)))
        return sub

    sage.k_hop_subgraph = recording
    try:
        yield seen
    finally:
        sage.k_hop_subgraph = original


def peak_memory(device: torch.device, run: Callable[[], None]) -> float:
    """MiB the call adds at its peak over what was in use before (see the module docstring)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        run()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")  # resets the peak resident size (VmHWM) to the current one
    before = resident_kib("VmRSS")
    run()
    return (resident_kib("VmHWM") - before) / 1024


def resident_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} line")


def train_steps(template: Any, batches: list, setting: Setting,
                device: torch.device) -> tuple[float, float, float, Any]:
    """(steps/s, steps per CPU second, peak MiB, trained module) of the bare training loop over ``batches``."""
    shared = [template.graph, template.features, template._on_device, getattr(template, "view_graphs", None)]
    memo = {id(v): v for v in shared if v is not None}  # the attached graph is read, not trained: not copied
    module = copy.deepcopy(template, memo).to(device)
    module.hparams.trim_layers, module.hparams.sparse_aggregation = setting
    module.log = lambda *args, **kwargs: None  # no trainer to log to
    optimizer = module.configure_optimizers()
    module.train()
    module.on_train_epoch_start()
    moved = [tuple(t.to(device) for t in b) for b in batches]
    elapsed = [0.0, 0.0]

    def run() -> None:
        start, cpu_start = time.perf_counter(), time.process_time()
        for i, batch in enumerate(moved):
            loss = module.training_step(batch, i)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed[:] = [time.perf_counter() - start, time.process_time() - cpu_start]

    peak = peak_memory(device, run)
    return len(moved) / elapsed[0], len(moved) / elapsed[1], peak, module


def max_weight_diff(a: Any, b: Any) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    return max((float((sa[k].float() - sb[k].float()).abs().max()) for k in sa if sa[k].numel()), default=0.0)


def edge_work(nodes_per_hop: list[int], edges_per_hop: list[int]) -> tuple[int, int]:
    """Edges processed by all layers without and with trimming (``len(edges_per_hop)`` layers)."""
    from graphrecall.graphs.sampling import trimmed_layer_sizes

    layers = len(edges_per_hop)
    full = layers * sum(edges_per_hop)
    trimmed = sum(s.num_edges for s in trimmed_layer_sizes(nodes_per_hop, edges_per_hop, layers))
    return full, trimmed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="medium", choices=["tiny", "small", "medium", "large"])
    p.add_argument("--steps", type=int, default=20, help="timed training steps per setting and repeat")
    p.add_argument("--repeats", type=int, default=3, help="rounds over the settings, alternating the order")
    p.add_argument("--only-ends", action="store_true",
                   help="time the original path and both switches on only (not each switch alone)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--device", default="auto", help="auto (cuda if available) | cpu | cuda")
    p.add_argument("--data-dir", default=str(ROOT / "data"), help="graph cache under <data-dir>/cache")
    p.add_argument("--json", default=None, help="write the measurements here")
    p.add_argument("overrides", nargs="*",
                   help="train.py overrides, e.g. aggregator=gat 'model.sampling.fanouts=[10,5]'")
    args = p.parse_args(argv)
    if args.steps < 1 or args.repeats < 1:
        raise SystemExit(f"--steps and --repeats must be >= 1, got {args.steps} and {args.repeats}")
    sys.path.insert(0, str(ROOT / "src"))
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))

    cfg = compose(args.preset, list(args.overrides), args.data_dir)
    template, batches, info = prepare(cfg, args.steps)
    if len(batches) < 2:
        raise SystemExit(f"an epoch of {info['examples']} examples in batches of {info['batch_size']} has "
                         f"{len(batches)} batch: a warm-up and a timed step need 2 (lower model.optim.batch_size)")
    warm, timed = batches[:1], batches[1:]  # fewer timed steps than --steps when the epoch is shorter (printed)
    print(f"preset {args.preset}: {info['contents']:,} contents, {info['topk_edges']:,} top-k edges, "
          f"{info['examples']:,} examples, batch {info['batch_size']}, {len(timed)} timed steps x {args.repeats} "
          f"repeats; data {info['data_seconds']:.0f} s, graph {info['graph_seconds']:.0f} s; {info['model']} on "
          f"{device}, {args.threads} thread(s); overrides: {' '.join(args.overrides) or '-'}", flush=True)

    settings = [ORIGINAL, BOTH] if args.only_ends else SETTINGS
    for setting in settings:  # warm-up
        train_steps(template, warm, setting, device)
    runs: dict[Setting, list[tuple[float, float, float]]] = {s: [] for s in settings}  # steps/s, steps/CPU s, MiB
    first: dict[Setting, Any] = {}
    seen: list = []
    for r in range(args.repeats):
        for setting in (settings if r % 2 == 0 else settings[::-1]):
            # the subgraphs of the first trimmed run (every run samples the same ones)
            record = r == 0 and setting == BOTH
            with recorded_subgraphs() if record else contextlib.nullcontext([]) as recorded:
                rate, cpu_rate, peak, module = train_steps(template, timed, setting, device)
            seen = recorded or seen
            if r == 0:
                first[setting] = module
            runs[setting].append((rate, cpu_rate, peak))
            print(f"  repeat {r + 1} {setting_name(setting)}: {rate:.3f} steps/s, {cpu_rate:.3f} steps/CPU s, "
                  f"peak +{peak:.0f} MiB", flush=True)
    weight_diff = {s: max_weight_diff(first[s], first[ORIGINAL]) for s in settings}
    first.clear()
    mean_nodes = np.mean([s[0] for s in seen], axis=0).tolist() if seen else []
    mean_edges = np.mean([s[1] for s in seen], axis=0).tolist() if seen else []
    work = [edge_work(*s) for s in seen]
    skipped = 1 - sum(w[1] for w in work) / max(sum(w[0] for w in work), 1)
    print(f"per step ({len(seen)} subgraphs): nodes per hop {[round(x) for x in mean_nodes]}, edges per hop "
          f"{[round(x) for x in mean_edges]}; trimming skips {skipped:.1%} of the layers' edge messages", flush=True)

    med = {s: [statistics.median(x[i] for x in runs[s]) for i in range(3)] for s in settings}
    base = med[ORIGINAL]
    print(f"| preset | trim_layers | sparse_aggregation | steps/s (median) | x original | steps/CPU s (median) | "
          f"x original | peak MiB over the steps (median) | max abs weight diff vs original after {len(timed)} steps |")
    print("|---|---|---|---|---|---|---|---|---|")
    for s in settings:
        rate, cpu_rate, peak = med[s]
        print(f"| {args.preset} | {'on' if s[0] else 'off'} | {'on' if s[1] else 'off'} | {rate:.3f} | "
              f"{rate / base[0]:.2f}x | {cpu_rate:.3f} | {cpu_rate / base[1]:.2f}x | {peak:.0f} | "
              f"{weight_diff[s]:.1e} |")
    ratio, cpu_ratio = med[BOTH][0] / base[0], med[BOTH][1] / base[1]
    verdict = lambda r: "PASS" if r >= TARGET_SPEEDUP else "FAIL"  # noqa: E731
    print(f"speed-up of both on over the original path: {ratio:.2f}x steps/s ({verdict(ratio)}), {cpu_ratio:.2f}x "
          f"steps/CPU s ({verdict(cpu_ratio)}) against {TARGET_SPEEDUP}x; peak memory both on / original: "
          f"{med[BOTH][2] / base[2]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "preset": args.preset, "overrides": args.overrides, "steps": len(timed), "repeats": args.repeats,
            "threads": args.threads, "device": str(device), "machine": platform.processor() or platform.machine(),
            **info, "mean_nodes_per_hop": mean_nodes, "mean_edges_per_hop": mean_edges,
            "edge_messages_skipped": skipped, "run_columns": ["steps/s", "steps/CPU s", "peak MiB"],
            "settings": {setting_name(s): {
                "trim_layers": s[0], "sparse_aggregation": s[1], "runs": runs[s], "steps_per_s": med[s][0],
                "steps_per_cpu_s": med[s][1], "peak_mib": med[s][2], "speedup": med[s][0] / base[0],
                "speedup_cpu": med[s][1] / base[1], "max_weight_diff": weight_diff[s]} for s in settings},
            "speedup": ratio, "speedup_cpu": cpu_ratio, "baseline": setting_name(ORIGINAL), "compared": setting_name(BOTH),
        }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
