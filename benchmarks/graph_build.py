"""Benchmark: content co-click graph build, graphrecall vs a plain pandas self-join.

Builds the default content graph of the design brief (section 2: sessions of ``session_days`` per
user, row-normalised weights ``w_ij = N(i,j) / sum_k N(i,k)`` kept when ``> tau``) from the last
``window_days`` of the synthetic home feed, twice, in the same run:

* ``graphrecall``: :func:`graphrecall.graphs.coclick.session_codes` + ``coclick_graph`` (one
  sparse product ``B^T B``);
* ``pandas``: the straightforward implementation: sessionise with ``groupby.ngroup``, de-duplicate
  (session, content), merge the frame with itself on the session, drop ``i == j``, ``groupby.size``,
  row-normalise, threshold.

The clicks are generated once (not timed), saved to a temporary parquet file, and every
implementation runs in its own fresh Python process that reads it, so time and peak memory are
measured separately. Peak RSS is the child's peak resident set size while building (``ru_maxrss``
of the child, or RSS sampled every few ms when the peak was reached while loading); "build" memory
is that peak minus the child's RSS after loading the clicks (and importing its code). Both results
are then compared edge by edge.

Targets (issue): graphrecall >= 10x faster than pandas, <= 60 s and <= 4 GiB peak RSS on 2 cores,
for the ``large`` preset (~10M clicks). PASS / FAIL is printed per target; the exit code is 0.

Usage::

    python benchmarks/graph_build.py                          # large preset, ~10M clicks
    python benchmarks/graph_build.py --num-clicks 1000000     # large world, 1M clicks
    python benchmarks/graph_build.py --preset medium
    python benchmarks/graph_build.py --reference-clicks 2000000  # pandas on a prefix only
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

DAY = 86_400
GIB = 2**30
TARGET_SPEEDUP = 10.0
TARGET_SECONDS = 60.0
TARGET_PEAK_GIB = 4.0


# --------------------------------------------------------------------------- the two builds


def build_ours(u: np.ndarray, i: np.ndarray, ts: np.ndarray, num_items: int, origin: int,
               session_days: float, tau: float):
    from graphrecall.graphs.coclick import coclick_graph, session_codes

    session, num_sessions = session_codes(u, ts, session_days, origin)
    weights, _, stats = coclick_graph(session, i, num_sessions, num_items, tau=tau, weighting="row")
    return weights, {"sessions": int(num_sessions), "edges_before_threshold": stats.edges_before_threshold}


def build_pandas(u: np.ndarray, i: np.ndarray, ts: np.ndarray, num_items: int, origin: int,
                 session_days: float, tau: float):
    import pandas as pd
    import scipy.sparse as sp

    df = pd.DataFrame({"u": u, "i": i, "bucket": (ts - origin) // int(session_days * DAY)})
    df["s"] = df.groupby(["u", "bucket"], sort=False).ngroup()
    sess = df[["s", "i"]].drop_duplicates()
    pairs = sess.merge(sess, on="s", suffixes=("", "_j"))
    pairs = pairs[pairs["i"] != pairs["i_j"]]
    n = pairs.groupby(["i", "i_j"]).size()
    del pairs
    w = n / n.groupby(level=0).transform("sum")
    w = w[w > tau]
    rows = w.index.get_level_values(0).to_numpy(np.int64)
    cols = w.index.get_level_values(1).to_numpy(np.int64)
    weights = sp.csr_matrix((w.to_numpy(np.float64), (rows, cols)), shape=(num_items, num_items))
    weights.sort_indices()
    return weights, {"sessions": int(df["s"].max()) + 1, "edges_before_threshold": int(len(n))}


IMPLEMENTATIONS = {"graphrecall": build_ours, "pandas": build_pandas}


# --------------------------------------------------------------------------- child process


class PeakSampler:
    """RSS of this process sampled every ``interval`` seconds in a background thread."""

    def __init__(self, interval: float = 0.005) -> None:
        import psutil

        self.proc, self.interval, self.peak = psutil.Process(), interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> "PeakSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def maxrss_bytes() -> int:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib if platform.system() == "Darwin" else kib * 1024


def worker(impl: str, input_path: str, output_prefix: str) -> None:
    import pandas as pd
    import psutil

    meta = json.loads(Path(input_path).with_suffix(".json").read_text())
    clicks = pd.read_parquet(input_path)
    u, i, ts = (clicks[c].to_numpy(np.int64) for c in ("u", "i", "timestamp"))
    del clicks
    if impl == "graphrecall":  # imports are not part of the build
        import graphrecall.graphs.coclick  # noqa: F401
    else:
        import scipy.sparse  # noqa: F401
    gc.collect()
    baseline = psutil.Process().memory_info().rss
    maxrss_before = maxrss_bytes()
    with PeakSampler() as sampler:
        start = time.perf_counter()
        weights, info = IMPLEMENTATIONS[impl](u, i, ts, meta["num_items"], meta["origin"],
                                              meta["session_days"], meta["tau"])
        seconds = time.perf_counter() - start
    maxrss_after = maxrss_bytes()
    peak = maxrss_after if maxrss_after > maxrss_before else sampler.peak
    weights = weights.tocsr()
    weights.sort_indices()
    np.savez(output_prefix + ".npz", indptr=weights.indptr, indices=weights.indices, data=weights.data,
             shape=np.array(weights.shape))
    Path(output_prefix + ".json").write_text(json.dumps({
        "impl": impl, "seconds": seconds, "peak_rss": int(peak), "baseline_rss": int(baseline),
        "edges": int(weights.nnz), "clicks": len(u), **info,
    }))


def run_child(impl: str, input_path: Path, workdir: Path, tag: str) -> tuple[dict, "object"]:
    import scipy.sparse as sp

    prefix = str(workdir / f"{impl}-{tag}")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", impl, "--input", str(input_path),
           "--output", prefix]
    print(f"  running {impl} on {tag} in a fresh process ...", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"  {impl} FAILED (exit {proc.returncode}; a negative code is a signal, -9 = killed, "
              f"e.g. out of memory):\n{proc.stderr[-3000:]}", flush=True)
        return {"impl": impl, "failed": True, "returncode": proc.returncode}, None
    res = json.loads(Path(prefix + ".json").read_text())
    z = np.load(prefix + ".npz")
    weights = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
    return res, weights


# --------------------------------------------------------------------------- parent


def write_clicks(path: Path, u, i, ts, meta: dict) -> None:
    import pandas as pd

    pd.DataFrame({"u": u, "i": i, "timestamp": ts}).to_parquet(path)
    path.with_suffix(".json").write_text(json.dumps(meta))


def generate(args: argparse.Namespace, workdir: Path) -> tuple[Path, dict]:
    from graphrecall.data.splits import encode_clicks
    from graphrecall.data.synthetic import generate_home_feed

    overrides = {"num_clicks": args.num_clicks} if args.num_clicks else {}
    start = time.perf_counter()
    ds = generate_home_feed(args.preset, args.seed, **overrides)
    clicks = encode_clicks(ds)
    ts = clicks["timestamp"].to_numpy(np.int64)
    window_start = int(ts.max()) + 1 - int(args.window_days * DAY)
    w = clicks[ts >= window_start]
    num_items = ds.num_contents
    u, i, wts = (w[c].to_numpy(np.int64) for c in ("u", "i", "timestamp"))
    del ds, clicks, w
    gc.collect()
    # sort by time so that a --reference-clicks prefix is a shorter window
    order = np.argsort(wts, kind="stable")
    u, i, wts = u[order], i[order], wts[order]
    meta = {"num_items": num_items, "origin": int(wts.min()), "session_days": args.session_days,
            "tau": args.tau, "total_clicks": int(len(ts))}
    path = workdir / "clicks.parquet"
    write_clicks(path, u, i, wts, meta)
    print(f"generated preset={args.preset} seed={args.seed}: {len(ts):,} clicks, {num_items:,} contents; "
          f"last {args.window_days:g} days: {len(u):,} clicks ({time.perf_counter() - start:.1f} s, not timed)",
          flush=True)
    return path, meta


def compare(a, b) -> dict:
    a, b = a.tocsr(), b.tocsr()
    a.sort_indices()
    b.sort_indices()
    same_pattern = a.nnz == b.nnz and np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
    if same_pattern:
        diff = float(np.abs(a.data - b.data).max(initial=0.0))
        only_a = only_b = 0
    else:
        d = (a - b).tocsr()
        diff = float(np.abs(d.data).max(initial=0.0))
        pa, pb = a.astype(bool).astype(np.int8), b.astype(bool).astype(np.int8)
        only_a, only_b = int((pa - pb > 0).sum()), int((pb - pa > 0).sum())
    return {"same_edges": same_pattern, "max_abs_diff": diff, "only_ours": only_a, "only_pandas": only_b}


def fmt_row(cells, widths) -> str:
    return "  ".join(str(c).rjust(w) if k else str(c).ljust(w) for k, (c, w) in enumerate(zip(cells, widths)))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="large", help="synthetic preset (tiny, small, medium, large)")
    p.add_argument("--num-clicks", type=int, default=None, help="override the preset's number of clicks")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--window-days", type=float, default=15)
    p.add_argument("--session-days", type=float, default=3)
    p.add_argument("--tau", type=float, default=0.01)
    p.add_argument("--reference-clicks", type=int, default=None,
                   help="run the pandas reference on only the first N window clicks (a shorter window) "
                        "when the full self-join does not fit in memory; graphrecall then runs on both sizes")
    p.add_argument("--keep-dir", default=None, help="keep the parquet and results in this folder")
    p.add_argument("--worker", choices=sorted(IMPLEMENTATIONS), help=argparse.SUPPRESS)
    p.add_argument("--input", help=argparse.SUPPRESS)
    p.add_argument("--output", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.worker, args.input, args.output)
        return

    import psutil

    workdir = Path(args.keep_dir) if args.keep_dir else Path(tempfile.mkdtemp(prefix="graph_build_"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        print(f"machine: {os.cpu_count()} CPU cores, {psutil.virtual_memory().total / GIB:.1f} GiB RAM, "
              f"python {platform.python_version()}")
        print(f"graph: content co-click, session_days={args.session_days:g}, weighting=row, tau={args.tau:g}, "
              f"last {args.window_days:g} days", flush=True)
        path, meta = generate(args, workdir)
        import pandas as pd

        full_n = len(pd.read_parquet(path, columns=["u"]))
        ref_path, ref_tag = path, "full"
        if args.reference_clicks is not None and args.reference_clicks < full_n:
            c = pd.read_parquet(path).iloc[: args.reference_clicks]
            ref_path, ref_tag = workdir / "clicks_reference.parquet", f"first {args.reference_clicks:,} clicks"
            write_clicks(ref_path, c["u"].to_numpy(), c["i"].to_numpy(), c["timestamp"].to_numpy(), meta)
            del c

        ours, w_ours = run_child("graphrecall", path, workdir, "full")
        if ref_path != path:
            ours_ref, w_ours_ref = run_child("graphrecall", ref_path, workdir, "reference")
        else:
            ours_ref, w_ours_ref = ours, w_ours
        theirs, w_theirs = run_child("pandas", ref_path, workdir, "reference" if ref_path != path else "full")

        print()
        if ref_path != path:
            print(f"NOTE: the pandas reference ran on the {ref_tag} of the window only (--reference-clicks); "
                  f"the speed and memory ratios compare it with graphrecall on the same clicks.")
        widths = (26, 12, 9, 15, 16, 12)
        print(fmt_row(("implementation", "clicks", "seconds", "peak RSS (GiB)", "build RSS (GiB)", "edges"), widths))
        rows = [("graphrecall", ours)]
        if ref_path != path:
            rows.append(("graphrecall (ref. clicks)", ours_ref))
        rows.append(("pandas self-join", theirs))
        for name, r in rows:
            if r.get("failed"):
                print(fmt_row((name, "-", "FAILED", "-", "-", "-"), widths))
                continue
            print(fmt_row((name, f"{r['clicks']:,}", f"{r['seconds']:.2f}", f"{r['peak_rss'] / GIB:.2f}",
                           f"{(r['peak_rss'] - r['baseline_rss']) / GIB:.2f}", f"{r['edges']:,}"), widths))
        if not ours.get("failed"):
            print(f"sessions: {ours['sessions']:,}; co-click pairs before threshold: "
                  f"{ours['edges_before_threshold']:,}")
        print("peak RSS: whole child process while building (clicks and imported code included); "
              "build RSS: peak minus the child's RSS after loading the clicks")

        speedup = mem_ratio = None
        if not theirs.get("failed") and not ours_ref.get("failed"):
            cmp = compare(w_ours_ref, w_theirs)
            speedup = theirs["seconds"] / ours_ref["seconds"]
            mem_ratio = (theirs["peak_rss"] - theirs["baseline_rss"]) / max(
                ours_ref["peak_rss"] - ours_ref["baseline_rss"], 1)
            peak_ratio = theirs["peak_rss"] / ours_ref["peak_rss"]
            print(f"ratio pandas/graphrecall: time {speedup:.1f}x, build RSS {mem_ratio:.1f}x, "
                  f"peak RSS {peak_ratio:.1f}x")
            print(f"same edges: {cmp['same_edges']} (only graphrecall: {cmp['only_ours']}, only pandas: "
                  f"{cmp['only_pandas']}); max |w_ours - w_pandas| = {cmp['max_abs_diff']:.3g}")

        print()
        print("targets:")
        if speedup is None:
            print("  >= 10x faster than pandas      : n/a (pandas reference failed)")
        else:
            print(f"  >= {TARGET_SPEEDUP:g}x faster than pandas      : {speedup:.1f}x  "
                  f"{'PASS' if speedup >= TARGET_SPEEDUP else 'FAIL'}")
        if ours.get("failed"):
            print("  graphrecall failed: time and memory targets FAIL")
        else:
            print(f"  <= {TARGET_SECONDS:g} s                        : {ours['seconds']:.2f} s  "
                  f"{'PASS' if ours['seconds'] <= TARGET_SECONDS else 'FAIL'}")
            print(f"  <= {TARGET_PEAK_GIB:g} GiB peak RSS               : {ours['peak_rss'] / GIB:.2f} GiB  "
                  f"{'PASS' if ours['peak_rss'] <= TARGET_PEAK_GIB * GIB else 'FAIL'}")
        if meta["total_clicks"] < 9_000_000:
            print(f"  (the targets are stated for ~10M clicks; this run generated {meta['total_clicks']:,})")
    finally:
        if not args.keep_dir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
