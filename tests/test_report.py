"""graphrecall.report on a fixture of run directories: the aggregated numbers, the markdown table, the plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from graphrecall import report

# label -> seed -> (test/recall@50, test/ndcg@50, val/recall@50); "ndcg" is missing for one gat seed
VALUES = {
    "aggregator=mean": {0: (0.30, 0.15, 0.29), 1: (0.32, 0.17, 0.31), 2: (0.31, 0.16, 0.30)},
    "aggregator=gat": {0: (0.25, 0.12, 0.24), 1: (0.29, None, 0.26)},
    "aggregator=sum": {0: (0.08, 0.04, 0.07)},
}
SUM_CI = (0.06, 0.10)


def write_run(run_dir: Path, overrides: list[str], metrics: dict[str, float], summary: dict | None = None) -> None:
    """A run directory as train.py leaves it (the parts the report reads)."""
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (run_dir / "metrics.json").write_text(json.dumps({"metrics": metrics, "summary": summary or {}}))


def make_sweep(root: Path) -> Path:
    """A 6-run sweep: 3 aggregators x up to 3 seeds, plus an unfinished run (no metrics.json)."""
    job = 0
    for label, seeds in VALUES.items():
        for seed, (recall, ndcg, val) in seeds.items():
            metrics = {"test/recall@50": recall, "val/recall@50": val}
            if ndcg is not None:
                metrics["test/ndcg@50"] = ndcg
            summary = None
            if label == "aggregator=sum":
                summary = {"test": [{"slice": "all", "metric": "recall@50", "mean": recall,
                                     "ci_low": SUM_CI[0], "ci_high": SUM_CI[1], "n_users": 100}]}
            write_run(root / str(job), ["experiment=aggregators", "dataset=synthetic", label, f"seed={seed}"],
                      metrics, summary)
            job += 1
    (root / str(job) / ".hydra").mkdir(parents=True)  # a job that never finished: ignored
    return root


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    return make_sweep(tmp_path / "sweep")


def test_collect_runs_labels_by_the_overrides_that_differ(sweep):
    runs = report.collect_runs(sweep)
    assert len(runs) == 6
    assert [r["label"] for r in runs] == [*["aggregator=mean"] * 3, *["aggregator=gat"] * 2, "aggregator=sum"]
    assert sorted(r["seed"] for r in runs) == [0, 0, 0, 1, 1, 2]


def test_aggregate_gives_mean_std_and_counts(sweep):
    long = report.aggregate(report.collect_runs(sweep), "test", ("recall@50", "ndcg@50"), ("val/recall@50",))
    by = {(r.run, r.metric): r for r in long.itertuples(index=False)}
    for label, seeds in VALUES.items():
        recall = np.array([v[0] for v in seeds.values()])
        row = by[(label, "recall@50")]
        assert row.n == len(recall) and row.seeds == len(seeds) and row.key == "test/recall@50"
        assert row.mean == pytest.approx(recall.mean())
        if len(recall) > 1:
            assert row.std == pytest.approx(recall.std(ddof=1))
        val = by[(label, "val/recall@50")]
        assert val.key == "val/recall@50" and val.mean == pytest.approx(np.mean([v[2] for v in seeds.values()]))
    gat_ndcg = by[("aggregator=gat", "ndcg@50")]  # one of two seeds lacks it: one value, no std
    assert gat_ndcg.n == 1 and gat_ndcg.seeds == 2 and gat_ndcg.mean == pytest.approx(0.12) and np.isnan(gat_ndcg.std)
    single = by[("aggregator=sum", "recall@50")]
    assert (single.ci_low, single.ci_high) == SUM_CI and np.isnan(single.std)
    assert np.isnan(by[("aggregator=mean", "recall@50")].ci_low)  # several seeds: no per-user interval


def test_markdown_table_cells(sweep):
    table = report.results_table(report.collect_runs(sweep), "test", ("recall@50", "ndcg@50"))
    md = report.to_markdown(table).splitlines()
    assert md[0] == "| run | seeds | recall@50 | ndcg@50 |"
    assert md[2] == "| aggregator=mean | 3 | 0.3100 ± 0.0100 | 0.1600 ± 0.0100 |"
    gat = np.array([0.25, 0.29])
    assert md[3] == f"| aggregator=gat | 2 | {gat.mean():.4f} ± {gat.std(ddof=1):.4f} | 0.1200 |"
    assert md[4] == "| aggregator=sum | 1 | 0.0800 [0.0600, 0.1000] | 0.0400 |"


def test_cli_writes_table_and_bar_plot_with_table_means(sweep, tmp_path):
    out, png = tmp_path / "results.md", tmp_path / "plots" / "recall.png"
    text = report.main([str(sweep), "--metrics", "recall@50", "ndcg@50", "--extra", "val/recall@50",
                        "--out", str(out), "--plot", str(png)])
    assert out.read_text() == text and "| aggregator=mean | 3 | 0.3100 ± 0.0100 |" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(png.parent.glob("*.tmp"))
    # the plot of an extra key
    report.main([str(sweep), "--metrics", "recall@50", "--extra", "val/recall@50", "--plot", str(png),
                 "--plot-metric", "val/recall@50"])
    with pytest.raises(SystemExit):  # a metric the table does not have
        report.main([str(sweep), "--metrics", "recall@50", "--plot", str(png), "--plot-metric", "ndcg@20"])


def test_ablation_bars_heights_and_error_bars_match_the_table(sweep):
    from matplotlib.patches import Rectangle

    from graphrecall.plots import ablation_bars

    long = report.aggregate(report.collect_runs(sweep), "test", ("recall@50",))
    fig = ablation_bars(long, "recall@50")
    ax = fig.axes[0]
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert [b.get_width() for b in bars] == pytest.approx(long["mean"].tolist())
    assert [t.get_text() for t in ax.get_yticklabels()] == ["aggregator=mean", "aggregator=gat", "aggregator=sum"]
    # error bars: std for several seeds, the bootstrap interval for the single run
    from matplotlib.container import BarContainer

    container = [c for c in ax.containers if isinstance(c, BarContainer)][0]
    segments = container.errorbar.lines[2][0].get_segments()
    spans = [(s[0][0], s[1][0]) for s in segments]  # horizontal error bars: x extents
    assert spans[0] == pytest.approx((0.31 - 0.01, 0.31 + 0.01))
    assert spans[2] == pytest.approx(SUM_CI)
    assert [t.get_text() for t in ax.texts] == ["n=3", "n=2", "n=1"]
    with pytest.raises(KeyError, match="recall@50"):
        ablation_bars(long, "ndcg@50")
