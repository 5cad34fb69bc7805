"""graph.backend=spark against the scipy backend: the same edges, weights, counts and statistics for
every graph kind and weighting, and the same metrics end to end (co-click on the tiny world).

One Spark session for the whole module (~10-20 s to start); skipped when pyspark is not installed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from graphrecall.data.splits import encode_clicks
from graphrecall.data.synthetic import generate_home_feed
from graphrecall.graphs.views import WeightedGraph, build_group_graph, build_view_graph, user_groups

pytest.importorskip("pyspark")
from graphrecall.graphs import spark as spark_graphs  # noqa: E402

# one local session; C1-only JIT and no adaptive re-planning: faster on small jobs
SPARK_TEST_CONF = {"spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
                   "spark.sql.adaptive.enabled": "false"}


@pytest.fixture(scope="module")
def spark():
    session = spark_graphs.spark_session("local[2]", 2, **SPARK_TEST_CONF)
    yield session
    session.stop()


@pytest.fixture(scope="module")
def world():
    dataset = generate_home_feed("tiny", seed=0)
    return dataset, encode_clicks(dataset)


def assert_same_graph(a: WeightedGraph, b: WeightedGraph) -> None:
    """Same kept edges (pattern in the same order), weights to 1e-12, counts and stats equal."""
    wa, wb = a.weights.tocsr(), b.weights.tocsr()
    wa.sort_indices()
    assert wa.shape == wb.shape and wa.nnz == wb.nnz > 0
    assert np.array_equal(wa.indptr, wb.indptr) and np.array_equal(wa.indices, wb.indices)
    assert np.max(np.abs(wa.data - wb.data)) <= 1e-12
    assert (sp.csr_matrix(a.counts) != sp.csr_matrix(b.counts)).nnz == 0 and a.counts.nnz == b.counts.nnz
    assert a.stats == b.stats
    assert np.array_equal(a.row_vocab, b.row_vocab) and np.array_equal(a.col_vocab, b.col_vocab)


@pytest.mark.parametrize("params", [
    {"weighting": "row"},
    {"weighting": "confidence", "tau": 0.05, "min_count": 2},
    {"weighting": "cosine", "tau": 0.01, "top_k": 5},
    {"weighting": "ordered", "tau": 0.01, "top_k": 3, "session_days": 1},
    {"view": "products", "weighting": "row", "tau": 0.001, "top_k": 4},  # multi-valued side-info view
], ids=["row", "confidence-min_count", "cosine-top_k", "ordered", "products-view"])
def test_spark_view_graph_equals_scipy(spark, world, params):
    dataset, clicks = world
    scipy_graph = build_view_graph(clicks, dataset, **params)
    spark_graph = build_view_graph(clicks, dataset, backend="spark", **params)
    assert_same_graph(scipy_graph, spark_graph)
    s = scipy_graph.stats  # the pruning steps of this case really dropped something (or not, for row)
    if "min_count" in params:
        assert s.edges_dropped_by_min_count > 0
    if "top_k" in params:
        assert s.edges_dropped_by_top_k > 0 and np.diff(spark_graph.weights.indptr).max() == params["top_k"]


def test_spark_group_graph_equals_scipy(spark, world, tmp_path):
    dataset, clicks = world
    group_of_user, vocab = user_groups(dataset.users, ["age_band", "gender"])
    a = build_group_graph(clicks, dataset, group_of_user, vocab, tau=0.002, min_count=2)
    b = build_group_graph(clicks, dataset, group_of_user, vocab, tau=0.002, min_count=2, backend="spark",
                          spark={"work_dir": str(tmp_path)})
    assert_same_graph(a, b)
    assert a.stats.edges_dropped_by_min_count > 0 and a.stats.edges_dropped_by_threshold > 0
    # work_dir keeps the job's parquet: the edge list the pipeline read, one row per kept edge
    import pyarrow.parquet as pq

    edges = pq.read_table(str(tmp_path / "group_content" / "edges")).to_pandas()
    assert len(edges) == b.weights.nnz and set(edges.columns) == {"i", "j", "n", "w"}


def test_bad_backend_and_spark_keys_name_the_key(spark, world):
    dataset, clicks = world
    with pytest.raises(ValueError, match="graph.backend='dask'"):
        build_view_graph(clicks, dataset, backend="dask")
    with pytest.raises(ValueError, match=r"graph.spark: unknown key\(s\) \['partitions'\]"):
        build_view_graph(clicks, dataset, backend="spark", spark={"partitions": 4})


STAGE1_ONE_EPOCH = ["model=sage", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
                    "trainer.early_stopping_patience=0", "model.optim.batch_size=256"]


DICE_ONE_EPOCH = ["model=dice", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
                  "trainer.early_stopping_patience=0", "model.groups.weighted=true", "model.groups.tau=0.001"]


@pytest.mark.slow
@pytest.mark.parametrize("model,graph", [(["model=coclick"], "content"), (STAGE1_ONE_EPOCH, "content"),
                                         (DICE_ONE_EPOCH, "group_content")], ids=["coclick", "stage1", "dice"])
def test_model_trains_and_evaluates_the_same_on_both_backends(spark, tiny_cfg, tmp_path, model, graph):
    import train
    from omegaconf import open_dict

    results = {}
    for backend in ("scipy", "spark"):
        cfg = tiny_cfg([*model, f"graph.backend={backend}", f"graph.spark.work_dir={tmp_path / 'spark'}"])
        with open_dict(cfg):
            cfg.run_dir, cfg.cache_dir = str(tmp_path / backend), None  # no cache: each backend builds
        results[backend], _ = train.train(cfg)
    scores = {k: v for k, v in results["scipy"].items() if "seconds" not in k and "time" not in k}
    assert "val/recall@50" in scores and "test/recall@50" in scores
    # NaN (an empty slice, e.g. no cold user's target in a click bin) compares equal to itself
    differing = {k: (v, results["spark"][k]) for k, v in scores.items()
                 if not (v == results["spark"][k] or (math.isnan(v) and math.isnan(results["spark"][k])))}
    assert not differing
    assert (tmp_path / "spark" / graph / "edges").is_dir()  # the spark run really went through Spark


def test_standalone_job_writes_the_scipy_edges(spark, world, tmp_path):
    dataset, clicks = world
    path = spark_graphs.clicks_to_parquet(clicks, tmp_path / "clicks.parquet")
    stats = spark_graphs.main(["--clicks", str(path), "--out", str(tmp_path / "out"), "--tau", "0.02",
                               "--top-k", "6", "--num-contents", str(dataset.num_contents)])
    expected = build_view_graph(clicks, dataset, tau=0.02, top_k=6)  # origin: the first click in both
    got = spark_graphs.read_edges(tmp_path / "out" / "edges", expected.weights.shape)
    assert (got != expected.weights).nnz == 0 and got.nnz == expected.weights.nnz > 0
    assert stats == expected.stats.as_dict() and not (tmp_path / "out" / "counts").exists()


# ------------------------------------------------------------------------------- settings and start failures
# (none of these starts a JVM but the last, marked slow)

def test_bad_spark_settings_are_refused_before_anything_starts():
    with pytest.raises(ValueError, match=r"graph.spark.master='local\[0\]': expected a Spark master URL"):
        spark_graphs.spark_session("local[0]", 2)
    with pytest.raises(ValueError, match="graph.spark.shuffle_partitions=0: expected a whole number >= 1"):
        spark_graphs.spark_session("local[2]", 0)
    with pytest.raises(ValueError, match="spark.driver.memory='4x': expected a memory size such as 512m or 4g"):
        spark_graphs.spark_session("local[2]", 2, **{"spark.driver.memory": "4x"})
    for master in ("local", "local[*]", "local[4,2]", "local-cluster[2,1,1024]", "spark://h1:7077,h2:7077", "yarn",
                   "k8s://https://host:443"):
        spark_graphs.check_master(master)
    spark_graphs.check_spark_conf({"spark.driver.memory": "4g", "spark.executor.memoryOverhead": "512m"})


# what a failed start printed on this kind of machine (JDK 17, Spark 4.3): a bad master, a bad heap size
BAD_MASTER_STDERR = """WARNING: Using incubator modules: jdk.incubator.vector
Using Spark's default log4j profile: org/apache/spark/log4j2-defaults.properties
26/12/06 20:55:28 WARN Utils: Your hostname, vm, resolves to a loopback address: 127.0.0.1; using 192.0.2.2 instead
26/12/06 20:55:28 WARN Utils: Set SPARK_LOCAL_IP if you need to bind to another address
Exception in thread "main" org.apache.spark.SparkException: Master must either be yarn or start with spark, k8s, or local
\tat org.apache.spark.deploy.SparkSubmit.error(SparkSubmit.scala:1061)
\tat org.apache.spark.deploy.SparkSubmit.main(SparkSubmit.scala)"""
BAD_HEAP_STDERR = """Invalid maximum heap size: -Xmx4x
Error: Could not create the Java Virtual Machine.
Error: A fatal exception has occurred. Program will exit."""


def test_java_reason_is_the_gateways_first_lines_that_are_not_logs_or_frames():
    assert spark_graphs.java_reason(BAD_MASTER_STDERR.splitlines()) == (
        'Exception in thread "main" org.apache.spark.SparkException: Master must either be yarn or start with spark, '
        "k8s, or local")
    assert spark_graphs.java_reason(BAD_HEAP_STDERR.splitlines()) == (
        "Invalid maximum heap size: -Xmx4x | Error: Could not create the Java Virtual Machine.")
    assert "printed no reason" in spark_graphs.java_reason(["26/12/06 20:55:28 WARN Utils: loopback", ""])


def test_stderr_tail_keeps_a_child_processes_lines(capfd):
    import subprocess
    import sys

    with spark_graphs.StderrTail() as tail:
        subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('Invalid maximum heap size: -Xmx4x\\n')"],
                       check=True)
    assert tail.reason() == "Invalid maximum heap size: -Xmx4x"
    assert "Invalid maximum heap size" in capfd.readouterr().err  # still shown to the user


def _start_in_a_fresh_process(tmp_path, env_changes: dict, master: str = "yarn") -> tuple[str, str]:
    """spark_session(master) in a new Python (this one may hold a gateway already): (stdout, stderr)."""
    import os
    import subprocess
    import sys

    code = ("from graphrecall.graphs.spark import SparkStartError, spark_session\n"
            "try:\n"
            f"    spark_session({master!r}, 2)\n"
            "except SparkStartError as e:\n"
            "    print('REFUSED', e)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYSPARK_GATEWAY_PORT", "HADOOP_CONF_DIR", "YARN_CONF_DIR")}
    env.update({"OMP_NUM_THREADS": "1", **env_changes})
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    return done.stdout, done.stderr


def test_a_gateway_that_exits_is_reported_with_javas_reason(tmp_path):
    """pyspark only says "Java gateway process exited before sending its port number"; the launcher
    (a stand-in spark-submit here: no JVM) printed why, and the error carries it in one line."""
    spark_home = tmp_path / "spark_home"
    (spark_home / "bin").mkdir(parents=True)
    script = spark_home / "bin" / "spark-submit"
    script.write_text("#!/bin/sh\n"
                      "echo '26/12/06 20:55:28 WARN Utils: Your hostname resolves to a loopback address' >&2\n"
                      "echo 'Exception in thread \"main\" org.apache.spark.SparkException: When running with master "
                      "yarn either HADOOP_CONF_DIR or YARN_CONF_DIR must be set in the environment.' >&2\n"
                      "echo '\tat org.apache.spark.deploy.SparkSubmitArguments.error(SparkSubmitArguments.scala:670)' >&2\n"
                      "exit 1\n")
    script.chmod(0o755)
    out, err = _start_in_a_fresh_process(tmp_path, {"SPARK_HOME": str(spark_home)})
    assert out.strip() == (
        "REFUSED Spark did not start (graph.spark.master='yarn', shuffle_partitions=2): Exception in thread \"main\" "
        "org.apache.spark.SparkException: When running with master yarn either HADOOP_CONF_DIR or YARN_CONF_DIR must "
        "be set in the environment.")
    assert "WARN Utils" in err  # the launcher's output still reached stderr


@pytest.mark.slow
def test_a_real_jvm_refusal_is_reported_with_javas_reason(tmp_path):
    out, _ = _start_in_a_fresh_process(tmp_path, {})
    assert out.startswith("REFUSED Spark did not start (graph.spark.master='yarn', shuffle_partitions=2): ")
    assert "HADOOP_CONF_DIR or YARN_CONF_DIR must be set" in out and "JAVA_GATEWAY_EXITED" not in out
