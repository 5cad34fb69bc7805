"""Co-click graphs as a PySpark DataFrame job (``graph.backend=spark``).

The same graphs as :mod:`graphrecall.graphs.coclick` (content view, side-info views, the
user-group x content graph), for click logs that do not fit one machine: the click table is read
from parquet, the edge lists are written as parquet. Every step mirrors the scipy backend so that
edges and weights agree bit for bit:

* session = (user, ``(t - origin) // (session_days * 86400)``), integer floor division;
* a content counts once per session; ``N(i,j)`` = sessions holding both, ``i != j``;
  ``ordered``: sessions where the first click on ``j`` comes after the first click on ``i``
  (ties in time: the lower content index first);
* weights as :func:`graphrecall.graphs.coclick.edge_weights`, with the same floating-point
  operations: ``row`` = ``N(i,j) * (1 / sum_k N(i,k))``, ``confidence`` = ``N(i,j) * (1 / N(i))``,
  ``cosine`` = ``N(i,j) * (1 / sqrt N(i)) * (1 / sqrt N(j))``; group graph ``C(t,j) / sum_k C(t,k)``;
* keep ``w > tau`` and ``N >= min_count``, then the top-k per row by weight (ties: lower column).

Inside the pipeline (``train.py ... graph.backend=spark``) the window's clicks are written to
parquet and the edge lists read back into the same CSR matrices as the scipy backend. For a log
that does not fit the driver, run the job on its own (executors need no Python package: DataFrame
API only, no UDFs)::

    spark-submit --master <cluster> src/graphrecall/graphs/spark.py \
        --clicks <clicks parquet: u, i, timestamp> --out <folder> --tau 0.01 [--top-k 50]

``pyspark`` is an optional dependency (``pip install -e .[spark]``); this module imports it lazily.

Settings are checked before Spark starts (:func:`check_spark_settings`: the master URL's form, a
shuffle partition count >= 1, memory sizes such as ``4g``), so a typo fails at once naming its key
instead of in a Java trace. A session that fails to start anyway (a master the cluster refuses, a
JVM that cannot start) raises :class:`SparkStartError` with Java's own reason, read from the
gateway's stderr, in one line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from graphrecall.graphs.coclick import DAY_SECONDS, GraphStats, Weighting

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

SPARK_DEFAULTS: dict[str, Any] = {"master": "local[*]", "shuffle_partitions": 8, "work_dir": None}
WEIGHTINGS = ("row", "confidence", "cosine", "ordered")
# the master URLs Spark takes (spark-submit --master): local, local[N], local[*], local[N,F], local[*,F],
# local-cluster[N,C,M], spark://HOST:PORT[,HOST:PORT], yarn, k8s://HOST:PORT
MASTER_FORMS = "local, local[N], local[*], local[N,F], local-cluster[N,C,M], spark://HOST:PORT, yarn or k8s://HOST:PORT"
_MASTER = re.compile(r"local(\[(\*|[1-9]\d*)(,[1-9]\d*)?\])?|local-cluster\[[1-9]\d*,[1-9]\d*,[1-9]\d*\]"
                     r"|spark://[^\s/]+|yarn|k8s://\S+")
_MEMORY = re.compile(r"[1-9]\d*([kmgtp]b?|b)?", re.IGNORECASE)  # Spark's size strings: 512m, 4g, 1024k, 2gb


class SparkStartError(RuntimeError):
    """Spark did not start; the message carries Java's own reason."""


def check_spark_settings(spark_cfg: Mapping[str, Any] | None, key: str = "graph.spark") -> dict[str, Any]:
    """The ``graph.spark`` settings with their defaults, checked before any Spark starts.

    Raises:
        ValueError: an unknown key, a master URL of no form Spark takes, a shuffle partition count
            that is not a whole number >= 1, or a work_dir that is not a path; the message names
            ``<key>.<setting>``.
    """
    cfg = {**SPARK_DEFAULTS, **dict(spark_cfg or {})}
    unknown = sorted(set(cfg) - set(SPARK_DEFAULTS))
    if unknown:
        raise ValueError(f"{key}: unknown key(s) {unknown}; expected {sorted(SPARK_DEFAULTS)}")
    check_master(cfg["master"], f"{key}.master")
    partitions = cfg["shuffle_partitions"]
    if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
        raise ValueError(f"{key}.shuffle_partitions={partitions!r}: expected a whole number >= 1 "
                         "(spark.sql.shuffle.partitions; ~2-4x the cores)")
    if cfg["work_dir"] is not None and (not isinstance(cfg["work_dir"], (str, Path)) or not str(cfg["work_dir"])):
        raise ValueError(f"{key}.work_dir={cfg['work_dir']!r}: expected a folder path or null (a temporary folder)")
    return cfg


def check_master(master: Any, key: str = "graph.spark.master") -> str:
    """``master`` if it has the form of a Spark master URL, else a ValueError naming ``key``."""
    if not isinstance(master, str) or not _MASTER.fullmatch(master):
        raise ValueError(f"{key}={master!r}: expected a Spark master URL: {MASTER_FORMS}")
    return master


def check_spark_conf(conf: Mapping[str, Any]) -> None:
    """Spark properties given to a session: a memory size (``spark.driver.memory``,
    ``spark.executor.memoryOverhead``...) must read like ``512m`` or ``4g``, which the JVM parses
    (``-Xmx4x`` would stop the JVM before Spark can say why)."""
    for name, value in conf.items():
        if re.search(r"memory(overhead)?$", name, re.IGNORECASE) and not _MEMORY.fullmatch(str(value).strip()):
            raise ValueError(f"{name}={value!r}: expected a memory size such as 512m or 4g (a whole number with "
                             "an optional k, m, g, t or p unit)")


def java_reason(stderr_lines: list[str]) -> str:
    """Java's own reason for a failed start, from the gateway's stderr: the lines that are neither
    Spark's log lines (``26/12/06 20:55:28 WARN ...``), its start banner nor stack frames; the
    first two, joined."""
    noise = re.compile(r"^\d\d/\d\d/\d\d \d\d:\d\d:\d\d (TRACE|DEBUG|INFO|WARN) |^\s+at |^\s*\.\.\. \d+ more"
                       r"|^WARNING: Using incubator modules|^Using Spark's default log4j profile|^Setting default log "
                       r"level|^To adjust logging level")
    lines = [ln.strip() for ln in stderr_lines if ln.strip() and not noise.search(ln)]
    if not lines:
        return "the gateway printed no reason (check that `java -version` runs and JAVA_HOME, if set, is a JDK 17+)"
    return " | ".join(lines[:2])


class StderrTail:
    """Within ``with``, this process's stderr (file descriptor 2, which a child such as Spark's JVM
    inherits) is a pipe: every line still reaches the previous stderr, and the last ones are kept
    for :meth:`reason`. A child started inside keeps writing through the pipe after the block."""

    def __init__(self, keep: int = 200) -> None:
        self.lines: deque[str] = deque(maxlen=keep)
        self._thread: threading.Thread | None = None
        self._saved: int | None = None

    def __enter__(self) -> "StderrTail":
        sys.stderr.flush()
        self._saved = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        self._thread = threading.Thread(target=self._pump, args=(read_end, os.dup(self._saved)), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)

    def _pump(self, read_end: int, out: int) -> None:
        with os.fdopen(read_end, "rb") as pipe:
            for raw in pipe:
                try:
                    os.write(out, raw)
                except OSError:
                    pass
                self.lines.append(raw.decode(errors="replace").rstrip())
        os.close(out)

    def reason(self, timeout: float = 5.0) -> str:
        """:func:`java_reason` of what was written (waits up to ``timeout`` s for the writers to exit)."""
        if self._thread is not None:
            self._thread.join(timeout)
        return java_reason(list(self.lines))


def spark_session(master: str = "local[*]", shuffle_partitions: int = 8, **conf: str) -> SparkSession:
    """The active Spark session, or a new one (UI and console progress off, ``conf`` added).
    Under spark-submit the submitted session wins.

    Raises:
        ImportError: pyspark is not installed (names the extra to install).
        ValueError: a setting of no form Spark takes (checked before anything starts).
        SparkStartError: Spark did not start; the message holds Java's reason.
    """
    check_spark_settings({"master": master, "shuffle_partitions": shuffle_partitions})
    check_spark_conf(conf)
    try:
        from pyspark.sql import SparkSession
    except ImportError as e:
        raise ImportError("graph.backend=spark needs pyspark: pip install -e '.[spark]'") from e
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = SparkSession.builder
    if "PYSPARK_GATEWAY_PORT" not in os.environ:  # not under spark-submit, whose --master must win
        builder = builder.master(master)
    builder = (builder.appName("graphrecall-graphs")
               .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.shuffle.partitions", str(int(shuffle_partitions))))
    for key, value in conf.items():
        builder = builder.config(key, value)
    settings = f"graph.spark.master={master!r}, shuffle_partitions={shuffle_partitions}"
    with StderrTail() as tail:  # the JVM's stderr: its reason, when the gateway exits before it answers
        try:
            return builder.getOrCreate()
        except Exception as e:  # noqa: BLE001 - every start failure gets Java's reason, then re-raised as one
            failure = e
    if "JAVA_GATEWAY_EXITED" in str(failure):
        raise SparkStartError(f"Spark did not start ({settings}): {tail.reason()}") from failure
    first = next((ln.strip() for ln in str(failure).splitlines() if ln.strip()), type(failure).__name__)
    raise SparkStartError(f"Spark did not start ({settings}): {first}") from failure


# ------------------------------------------------------------------------------- DataFrame steps


def session_items(clicks: DataFrame, session_days: float, origin: int) -> DataFrame:
    """Distinct (session, item) rows: columns ``u``, ``b`` (bucket) form the session; ``i``; and
    ``t`` the first click time of the item in the session.

    Args:
        clicks: columns ``u`` (long), ``i`` (long), ``timestamp`` (long Unix seconds).
    """
    from pyspark.sql import functions as F

    length = int(session_days * DAY_SECONDS)
    x = F.col("timestamp") - F.lit(int(origin))
    bucket = ((x - F.pmod(x, F.lit(length))) / F.lit(length)).cast("long")  # exact floor division
    return (clicks.select("u", "i", "timestamp").withColumn("b", bucket)
            .groupBy("u", "b", "i").agg(F.min("timestamp").alias("t")))


def map_items_to_values(items: DataFrame, content_values: DataFrame) -> DataFrame:
    """Replace each content by its side-info value(s) (``content_values``: ``i``, ``v``), distinct per session."""
    from pyspark.sql import functions as F

    return (items.join(F.broadcast(content_values), "i").select("u", "b", F.col("v").alias("i"))
            .distinct())


def pair_counts(items: DataFrame) -> DataFrame:
    """``N(i,j)`` for ``i != j``: columns ``i``, ``j``, ``n``. Counted once for ``i < j``, then mirrored."""
    from pyspark.sql import functions as F

    a, b = items.select("u", "b", "i"), items.select("u", "b", F.col("i").alias("j"))
    half = a.join(b, ["u", "b"]).where(F.col("i") < F.col("j")).groupBy("i", "j").agg(F.count("*").alias("n"))
    return half.unionByName(half.select(F.col("j").alias("i"), F.col("i").alias("j"), "n"))


def ordered_pair_counts(items: DataFrame) -> DataFrame:
    """``N_ord(i,j)``: sessions in which ``j`` was first clicked after ``i`` (ties in time: lower index first)."""
    from pyspark.sql import functions as F

    a = items.select("u", "b", "i", F.col("t").alias("ti"))
    b = items.select("u", "b", F.col("i").alias("j"), F.col("t").alias("tj"))
    later = (F.col("ti") < F.col("tj")) | ((F.col("ti") == F.col("tj")) & (F.col("i") < F.col("j")))
    return a.join(b, ["u", "b"]).where(later).groupBy("i", "j").agg(F.count("*").alias("n"))


def weighted_pairs(counts: DataFrame, items: DataFrame, weighting: Weighting) -> DataFrame:
    """Add ``w`` to ``counts`` (``i``, ``j``, ``n``) with the scipy backend's floating-point operations."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    n = F.col("n").cast("double")
    if weighting in ("row", "ordered"):
        rowsum = F.sum("n").over(Window.partitionBy("i")).cast("double")
        return counts.withColumn("w", n * (F.lit(1.0) / rowsum))
    per_item = items.groupBy("i").agg(F.count("*").cast("double").alias("ni"))  # N(i): sessions holding i
    if weighting == "confidence":
        return counts.join(F.broadcast(per_item), "i").withColumn("w", n * (F.lit(1.0) / F.col("ni"))).drop("ni")
    if weighting == "cosine":
        inv = per_item.select("i", (F.lit(1.0) / F.sqrt("ni")).alias("inv_i"))
        invj = inv.select(F.col("i").alias("j"), F.col("inv_i").alias("inv_j"))
        return (counts.join(F.broadcast(inv), "i").join(F.broadcast(invj), "j")
                .withColumn("w", n * F.col("inv_i") * F.col("inv_j")).drop("inv_i", "inv_j"))
    raise ValueError(f"graph.weighting='{weighting}': expected one of {', '.join(WEIGHTINGS)}")


def keep_edges(weighted: DataFrame, tau: float, min_count: int, top_k: int | None) -> DataFrame:
    """``w > tau`` and ``n >= min_count``, then the ``top_k`` largest ``w`` per ``i`` (ties: lower ``j``)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    kept = weighted.where((F.col("w") > F.lit(float(tau))) & (F.col("n") >= F.lit(int(min_count))))
    if top_k is not None and top_k > 0:
        rank = F.row_number().over(Window.partitionBy("i").orderBy(F.col("w").desc(), F.col("j").asc()))
        kept = kept.withColumn("rank", rank).where(F.col("rank") <= int(top_k)).drop("rank")
    return kept


def prune_stats(weighted: DataFrame, kept: DataFrame, tau: float, min_count: int, num_rows: int,
                name: str) -> GraphStats:
    """The :class:`GraphStats` of :func:`graphrecall.graphs.coclick.prune_edges`, from two aggregates
    (``weighted``: every pair before pruning; ``kept``: after it)."""
    from pyspark.sql import functions as F

    by_count = F.col("n") >= F.lit(int(min_count))
    both = by_count & (F.col("w") > F.lit(float(tau)))
    row = weighted.agg(
        F.count("*").alias("pairs"),
        F.coalesce(F.sum(F.when(by_count, 1).otherwise(0)), F.lit(0)).alias("passing_count"),
        F.coalesce(F.sum(F.when(both, 1).otherwise(0)), F.lit(0)).alias("passing_both"),
        F.countDistinct("i").alias("rows"),
    ).first()
    out = kept.agg(F.count("*").alias("edges"), F.countDistinct("i").alias("rows")).first()
    pairs, passing, both_n, rows = (int(row[k]) for k in ("pairs", "passing_count", "passing_both", "rows"))
    edges, kept_rows = int(out["edges"]), int(out["rows"])
    return GraphStats(name=name, nodes=num_rows, nodes_with_coclicks=rows, edges_before_threshold=pairs,
                      edges_dropped_by_threshold=passing - both_n, edges_dropped_by_min_count=pairs - passing,
                      edges_dropped_by_top_k=both_n - edges, edges=edges,
                      nodes_isolated_by_threshold=rows - kept_rows, nodes_without_coclicks=num_rows - rows)


def coclick_job(clicks: DataFrame, session_days: float, origin: int, tau: float = 0.0,
                weighting: Weighting = "row", min_count: int = 1, top_k: int | None = None,
                content_values: DataFrame | None = None) -> tuple[DataFrame, DataFrame]:
    """The co-click graph of one view as DataFrames: (every pair ``i, j, n, w`` before pruning,
    kept edges ``i, j, n, w``). Nothing runs until an action (write, count) asks for them.

    Args:
        clicks: ``u``, ``i``, ``timestamp`` (longs), e.g. ``spark.read.parquet(path)``.
        session_days, origin: session buckets (see :func:`graphrecall.graphs.coclick.session_codes`).
        tau, weighting, min_count, top_k: see :func:`graphrecall.graphs.coclick.coclick_graph`.
        content_values: ``i``, ``v``: build the side-info view whose nodes are the values ``v``.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"graph.weighting='{weighting}': expected one of {', '.join(WEIGHTINGS)}")
    items = session_items(clicks, session_days, origin)
    if content_values is not None:
        if weighting == "ordered":
            raise ValueError("weighting='ordered' is only available for the content view")
        items = map_items_to_values(items, content_values)
    counts = ordered_pair_counts(items) if weighting == "ordered" else pair_counts(items)
    weighted = weighted_pairs(counts, items, weighting)
    return weighted, keep_edges(weighted, tau, min_count, top_k)


def group_job(clicks: DataFrame, user_groups: DataFrame, tau: float = 0.0,
              min_count: int = 1) -> tuple[DataFrame, DataFrame]:
    """User-group x content graph (``i`` = group, ``j`` = content): ``w = C(t,j) / sum_k C(t,k)``
    with ``C`` the clicks (repeats included) of the group's users; (every pair, kept edges).

    Args:
        clicks: ``u``, ``i`` (content).
        user_groups: ``u``, ``g`` (group code of each user).
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    counts = (clicks.select("u", F.col("i").alias("j")).join(F.broadcast(user_groups), "u")
              .groupBy(F.col("g").alias("i"), "j").agg(F.count("*").alias("n")))
    rowsum = F.sum("n").over(Window.partitionBy("i")).cast("double")
    weighted = counts.withColumn("w", F.col("n").cast("double") / rowsum)
    return weighted, keep_edges(weighted, tau, min_count, None)


# ------------------------------------------------------------------------------- parquet <-> scipy


def read_edges(path: str | Path, shape: tuple[int, int], value: str = "w") -> sp.csr_matrix:
    """A parquet edge list (``i``, ``j``, ``value``) as a CSR matrix [R, C] with sorted indices."""
    table = pq.read_table(str(path), columns=["i", "j", value])
    i, j = table["i"].to_numpy(), table["j"].to_numpy()
    dtype = np.float64 if value == "w" else np.int64
    m = sp.csr_matrix((table[value].to_numpy().astype(dtype), (i, j)), shape=shape)
    m.sum_duplicates()  # (each pair is written once: this only sorts)
    return m


@dataclass
class SparkGraph:
    """What one Spark build leaves: the edge lists on disk and the pruning statistics."""

    edges_path: str          # parquet i, j, n, w (kept edges)
    counts_path: str | None  # parquet i, j, n, w (every pair before pruning), when asked for
    stats: GraphStats


def run_job(weighted: DataFrame, kept: DataFrame, out_dir: str | Path, tau: float, min_count: int,
            num_rows: int, name: str, write_counts: bool = True) -> SparkGraph:
    """Write the kept edges (and every pair) as parquet under ``out_dir`` and count what was dropped.

    The pairs are persisted first, so the join runs once for the writes and the statistics.
    """
    base = str(out_dir).rstrip("/")  # a local folder or a URI Spark writes to (hdfs://..., s3a://...)
    edges_path, counts_path = f"{base}/edges", (f"{base}/counts" if write_counts else None)
    weighted = weighted.persist()
    try:
        kept.write.mode("overwrite").parquet(edges_path)
        if counts_path:
            weighted.write.mode("overwrite").parquet(counts_path)
        stats = prune_stats(weighted, kept, tau, min_count, num_rows, name)
    finally:
        weighted.unpersist()
    return SparkGraph(edges_path, counts_path, stats)


def clicks_to_parquet(window: pd.DataFrame, path: str | Path) -> Path:
    """The window's ``u``, ``i``, ``timestamp`` as one parquet file (int64 columns) for Spark to read."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({c: np.asarray(window[c].to_numpy(), dtype=np.int64) for c in ("u", "i", "timestamp")})
    pq.write_table(table, str(path))
    return path


def pairs_frame(spark: SparkSession, left: np.ndarray, right: np.ndarray, names: tuple[str, str],
                path: str | Path) -> DataFrame:
    """A two-column long table (content -> value, user -> group) written to ``path`` as parquet and read by Spark."""
    table = pa.table({names[0]: np.asarray(left, dtype=np.int64), names[1]: np.asarray(right, dtype=np.int64)})
    pq.write_table(table, str(path))
    return spark.read.parquet(str(path))


def build_with_spark(window: pd.DataFrame, shape: tuple[int, int], name: str, job, spark_cfg: dict[str, Any] | None,
                     tau: float, min_count: int) -> tuple[sp.csr_matrix, sp.csr_matrix, GraphStats]:
    """Run ``job(spark, clicks, root) -> (weighted, kept)`` on the window and read the result back
    (``root``: the job's folder, for the parquet tables it writes).

    ``spark_cfg``: ``master``, ``shuffle_partitions``, ``work_dir`` (null: a temporary folder,
    removed afterwards; else the click parquet and edge lists stay in ``<work_dir>/<name>/``).

    Returns:
        (kept weights [R, C] CSR, counts [R, C] CSR of every pair before pruning, stats).
    """
    cfg = check_spark_settings(spark_cfg)
    spark = spark_session(str(cfg["master"]), int(cfg["shuffle_partitions"]))
    keep = cfg["work_dir"] is not None
    root = Path(cfg["work_dir"]) / name if keep else Path(tempfile.mkdtemp(prefix=f"graphrecall-spark-{name}-"))
    try:
        clicks = spark.read.parquet(str(clicks_to_parquet(window, root / "clicks.parquet")))
        weighted, kept = job(spark, clicks, root)
        built = run_job(weighted, kept, root, tau, min_count, shape[0], name)
        weights = read_edges(built.edges_path, shape, "w")
        counts = read_edges(built.counts_path, shape, "n")
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    return weights, counts, built.stats


# ------------------------------------------------------------------------------- standalone job


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Build one content co-click graph from a parquet click table (any path Spark reads) and
    write ``<out>/edges`` (kept ``i, j, n, w``) and, with ``--counts``, ``<out>/counts``; prints
    the statistics as JSON."""
    p = argparse.ArgumentParser(description="co-click graph as a Spark job (graphrecall.graphs.spark)")
    p.add_argument("--clicks", required=True, help="parquet with integer u, i and timestamp (Unix seconds)")
    p.add_argument("--out", required=True, help="output folder (edges/, counts/)")
    p.add_argument("--session-days", type=float, default=3.0)
    p.add_argument("--origin", type=int, default=None, help="session bucket origin (default: first click)")
    p.add_argument("--weighting", default="row", choices=WEIGHTINGS)
    p.add_argument("--tau", type=float, default=0.0)
    p.add_argument("--min-count", type=int, default=1)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--num-contents", type=int, default=None, help="catalogue size (default: max i + 1)")
    p.add_argument("--counts", action="store_true", help="also write every pair before pruning")
    p.add_argument("--master", default="local[*]", help="ignored under spark-submit")
    p.add_argument("--shuffle-partitions", type=int, default=200)
    args = p.parse_args(argv)
    from pyspark.sql import functions as F

    spark = spark_session(args.master, args.shuffle_partitions)
    clicks = spark.read.parquet(args.clicks)
    origin, num_contents = args.origin, args.num_contents
    if origin is None or num_contents is None:
        first = clicks.agg(F.min("timestamp").alias("t"), F.max("i").alias("i")).first()
        origin = int(first["t"]) if origin is None else origin
        num_contents = int(first["i"]) + 1 if num_contents is None else num_contents
    weighted, kept = coclick_job(clicks, args.session_days, origin, args.tau, args.weighting, args.min_count,
                                 args.top_k)
    built = run_job(weighted, kept, args.out, args.tau, args.min_count, num_contents, "content", args.counts)
    stats = built.stats.as_dict()
    print(json.dumps(stats))
    return stats


if __name__ == "__main__":
    main()
