"""Benchmark: the content co-click graph with ``graph.backend=scipy`` and ``graph.backend=spark``
as the click log grows (1M / 10M / 50M clicks).

For every size, synthetic clicks are written to parquet in chunks of users (never one frame in the
parent): ``users = clicks / 20`` over 15 days, 100k contents, each click either a popular content
(power law) or one near the user's home content (co-click structure). Then each backend builds the
default content graph (3-day sessions, row weights, ``tau``) in its own fresh Python process:

* ``scipy``: reads the three columns into numpy, ``session_codes`` + ``coclick_graph``
  (:mod:`graphrecall.graphs.coclick`), writes the kept edges to ``.npz``;
* ``spark``: starts a local Spark session (timed apart), ``spark.read.parquet`` ->
  :func:`graphrecall.graphs.spark.coclick_job` -> kept edges written as parquet (the pre-pruning
  pair list is not written; statistics are counted in the same job).

Time is the wall time of the build in the child, reading the clicks included (Spark's session start
reported apart). Peak memory is the peak summed RSS of the child and its descendants (the JVM),
sampled every 20 ms. Both edge lists are read back here and compared edge by edge. Ratios are
spark / scipy in the same command, and each backend's growth per size step.

Usage::

    python benchmarks/graph_build_scale.py                          # 1M and 10M clicks
    python benchmarks/graph_build_scale.py --sizes 1e6 1e7 5e7 --spark-master 'local[*]'
    python benchmarks/graph_build_scale.py --sizes 1e6 --backends spark
"""

from __future__ import annotations

import argparse
import json
import os
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
ROOT = Path(__file__).resolve().parents[1]
T0 = 1_700_000_000  # first second of the synthetic log
sys.path.insert(0, str(ROOT / "src"))  # this checkout's package, also in the children (PYTHONPATH)


# --------------------------------------------------------------------------- data, in chunks


def write_clicks(path: Path, num_clicks: int, num_contents: int = 100_000, days: int = 15,
                 chunk_users: int = 50_000, seed: int = 0) -> dict[str, int]:
    """Synthetic clicks ``u, i, timestamp`` (int64) written to one parquet file chunk by chunk."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    num_users = max(1, num_clicks // 20)
    # popularity: P(rank r) ~ (r + 10)^-1.1, sampled by inverse CDF over a table of the catalogue
    cdf = np.cumsum((np.arange(num_contents) + 10.0) ** -1.1)
    cdf /= cdf[-1]
    rng = np.random.default_rng(seed)
    perm = rng.permutation(num_contents)  # popular contents spread over the ids
    written = 0
    schema = pa.schema([("u", pa.int64()), ("i", pa.int64()), ("timestamp", pa.int64())])
    with pq.ParquetWriter(str(path), schema) as writer:
        for start in range(0, num_users, chunk_users):
            users = np.arange(start, min(start + chunk_users, num_users), dtype=np.int64)
            share = num_clicks * len(users) // num_users if start + chunk_users < num_users else num_clicks - written
            r = np.random.default_rng([seed, start])
            u = np.sort(r.choice(users, size=share))
            popular = perm[np.searchsorted(cdf, r.random(share))]
            home = (u * 7919) % num_contents
            near = (home + r.geometric(0.05, size=share)) % num_contents
            i = np.where(r.random(share) < 0.5, popular, near).astype(np.int64)
            ts = T0 + r.integers(0, days * DAY, size=share, dtype=np.int64)
            writer.write_table(pa.table({"u": u, "i": i, "timestamp": ts}, schema=schema))
            written += share
    return {"clicks": written, "users": num_users, "contents": num_contents}


# --------------------------------------------------------------------------- the builds (children)


def build_scipy(clicks: Path, out: Path, num_contents: int, session_days: float, tau: float) -> dict:
    import pyarrow.parquet as pq

    from graphrecall.graphs.coclick import coclick_graph, session_codes

    start = time.perf_counter()
    table = pq.read_table(str(clicks), columns=["u", "i", "timestamp"])
    u, i, ts = (table[c].to_numpy() for c in ("u", "i", "timestamp"))
    del table
    session, num_sessions = session_codes(u, ts, session_days, T0)
    weights, _, stats = coclick_graph(session, i, num_sessions, num_contents, tau=tau, weighting="row")
    seconds = time.perf_counter() - start
    np.savez(out / "scipy_edges.npz", data=weights.data, indices=weights.indices, indptr=weights.indptr)
    return {"seconds": seconds, "edges": int(weights.nnz), "pairs": stats.edges_before_threshold}


def build_spark(clicks: Path, out: Path, num_contents: int, session_days: float, tau: float,
                master: str, partitions: int, driver_memory: str) -> dict:
    from graphrecall.graphs import spark as sg

    start = time.perf_counter()
    spark = sg.spark_session(master, partitions, **{"spark.driver.memory": driver_memory,
                                                   "spark.local.dir": str(out / "spark-tmp")})
    spark.range(1).count()  # the session is up
    session_seconds = time.perf_counter() - start
    start = time.perf_counter()
    weighted, kept = sg.coclick_job(spark.read.parquet(str(clicks)), session_days, T0, tau=tau, weighting="row")
    built = sg.run_job(weighted, kept, out / "spark", tau, 1, num_contents, "content", write_counts=False)
    seconds = time.perf_counter() - start
    spark.stop()
    return {"seconds": seconds, "session_seconds": session_seconds, "edges": built.stats.edges,
            "pairs": built.stats.edges_before_threshold}


def child(args: argparse.Namespace) -> None:
    out = Path(args.out)
    if args.child == "scipy":
        result = build_scipy(Path(args.clicks), out, args.num_contents, args.session_days, args.tau)
    else:
        result = build_spark(Path(args.clicks), out, args.num_contents, args.session_days, args.tau,
                             args.spark_master, args.shuffle_partitions, args.spark_driver_memory)
    print("RESULT " + json.dumps(result), flush=True)


# --------------------------------------------------------------------------- parent: run, measure, compare


def run_child(backend: str, clicks: Path, out: Path, args: argparse.Namespace) -> dict:
    """Run one build in a fresh process; returns its result plus the tree's peak RSS."""
    import psutil

    cmd = [sys.executable, __file__, "--child", backend, "--clicks", str(clicks), "--out", str(out),
           "--num-contents", str(args.num_contents), "--tau", str(args.tau), "--session-days", str(args.session_days),
           "--spark-master", args.spark_master, "--shuffle-partitions", str(args.shuffle_partitions),
           "--spark-driver-memory", args.spark_driver_memory]
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    peak = [0]

    def sample() -> None:
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                procs = [root, *root.children(recursive=True)]
                peak[0] = max(peak[0], sum(p.memory_info().rss for p in procs if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    stdout, _ = proc.communicate()
    thread.join()
    load = os.getloadavg()[0]  # other work on the machine slows both backends: printed with each result
    lines = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{backend} build failed (exit {proc.returncode}): {stdout[-2000:]}")
    return {**json.loads(lines[-1][len("RESULT "):]), "peak_gib": peak[0] / GIB, "load_avg_1min": load}


def compare(out: Path, num_contents: int) -> dict:
    import scipy.sparse as sp

    from graphrecall.graphs.spark import read_edges

    z = np.load(out / "scipy_edges.npz")
    a = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=(num_contents, num_contents))
    a.sort_indices()
    b = read_edges(out / "spark" / "edges", (num_contents, num_contents))
    same = a.nnz == b.nnz and np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
    diff = float(np.max(np.abs(a.data - b.data), initial=0.0)) if same else float("nan")
    return {"same_edges": bool(same), "max_weight_diff": diff}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=float, nargs="+", default=[1e6, 1e7], help="click counts")
    p.add_argument("--backends", nargs="+", default=["scipy", "spark"], choices=["scipy", "spark"])
    p.add_argument("--num-contents", type=int, default=100_000)
    p.add_argument("--session-days", type=float, default=3.0)
    p.add_argument("--tau", type=float, default=0.01)
    p.add_argument("--spark-master", default="local[*]")
    p.add_argument("--shuffle-partitions", type=int, default=16)
    p.add_argument("--spark-driver-memory", default="4g")
    p.add_argument("--work-dir", default=None, help="folder for the parquet files (default: a temporary one)")
    p.add_argument("--child", choices=["scipy", "spark"], help=argparse.SUPPRESS)
    p.add_argument("--clicks", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    root = Path(args.work_dir or tempfile.mkdtemp(prefix="graph-build-scale-"))
    rows = []
    try:
        for size in (int(s) for s in args.sizes):
            out = root / f"n{size}"
            out.mkdir(parents=True, exist_ok=True)
            start = time.perf_counter()
            meta = write_clicks(out / "clicks.parquet", size, args.num_contents)
            print(f"{size:,} clicks: {meta} written in {time.perf_counter() - start:.1f} s "
                  f"({(out / 'clicks.parquet').stat().st_size / 2**20:.0f} MiB parquet)", flush=True)
            row = {"clicks": size}
            for backend in args.backends:
                row[backend] = run_child(backend, out / "clicks.parquet", out, args)
                print(f"  {backend}: {json.dumps(row[backend])}", flush=True)
            if set(args.backends) == {"scipy", "spark"}:
                row.update(compare(out, args.num_contents))
                print(f"  compared: same edges {row['same_edges']}, max |w diff| {row['max_weight_diff']:.3g}")
            rows.append(row)
            shutil.rmtree(out, ignore_errors=True)
    finally:
        if not args.work_dir:
            shutil.rmtree(root, ignore_errors=True)
    print_table(rows, args.backends)


def print_table(rows: list[dict], backends: list[str]) -> None:
    print("\n| clicks | backend | build s | (spark session s) | peak GiB | edges | pairs | s vs previous size |")
    print("|---|---|---|---|---|---|---|---|")
    prev: dict[str, float] = {}
    for row in rows:
        for b in backends:
            r = row[b]
            growth = f"{r['seconds'] / prev[b]:.1f}x" if b in prev else ""
            sess = f"{r['session_seconds']:.1f}" if "session_seconds" in r else ""
            print(f"| {row['clicks']:,} | {b} | {r['seconds']:.1f} | {sess} | {r['peak_gib']:.2f} | {r['edges']:,} "
                  f"| {r['pairs']:,} | {growth} |")
            prev[b] = r["seconds"]
    if set(backends) == {"scipy", "spark"}:
        print("\nratios spark / scipy (same command): " + "; ".join(
            f"{row['clicks']:,} clicks: time {row['spark']['seconds'] / row['scipy']['seconds']:.1f}x, "
            f"peak memory {row['spark']['peak_gib'] / row['scipy']['peak_gib']:.1f}x, "
            f"same edges {row['same_edges']}, max |w diff| {row['max_weight_diff']:.3g}" for row in rows))


if __name__ == "__main__":
    main()
