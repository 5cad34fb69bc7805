"""graphrecall.report on hand-made run folders: labels from the resolved config, the aggregated
numbers, the paired differences (checked against a computation of their own here), several folders,
wrong folders, the written files, the offline W&B report run and the W&B Report spec."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from graphrecall import report
from graphrecall.metrics.bootstrap import paired_bootstrap_diff

USERS = 60


def record(model: str = "sage", seed: int = 0, *, aggregator: str = "mean", lr: float = 0.005, decay: float = 0.8,
           logger: str = "csv", progress: bool = False, data_seed: int = 0) -> dict:
    """A config_resolved.json as train.py writes it (the parts the report reads, with the noise it must ignore:
    seed copies, folders, logger, progress bar, threads, git revision)."""
    model_cfg: dict = {"_target_": f"graphrecall.models.{model}.Model", "seed": seed, "triggers": {"decay": decay}}
    if model == "sage":
        model_cfg.update(aggregator={"name": aggregator}, loss={"name": "bce"}, optim={"lr": lr})
    return {
        "task_name": "train", "seed": seed, "threads": 1, "data_dir": f"/data/{seed}", "cache_dir": f"/cache/{seed}",
        "recall": {"decay": decay},
        "dataset": {"name": "synthetic", "loader": {"preset": "tiny", "seed": data_seed}},
        "aggregator": {"name": aggregator}, "loss": {"name": "bce"},
        "trainer": {"max_epochs": 3, "enable_progress_bar": progress},
        "logger": {"name": logger, "project": "graphrecall"} if logger == "wandb" else {"name": logger},
        "model": model_cfg, "git_revision": f"rev{seed}",
        "choices": {"model": model, "aggregator": aggregator, "loss": "bce", "dataset": "synthetic",
                    "logger": logger, "trainer": "default", "debias": None, "experiment": None},
    }


def user_values(key: str, seed: int) -> np.ndarray:
    """Per-user recall@50 of a run, drawn from (key, seed)."""
    rng = np.random.default_rng([sum(map(ord, key)), seed])
    return rng.random(USERS).round(3)


def write_run(run_dir: Path, config: dict, metrics: dict[str, float], summary: dict | None = None,
              per_user: np.ndarray | None = None) -> None:
    """A run folder as train.py leaves it (the files the report reads)."""
    run_dir.mkdir(parents=True)
    (run_dir / "config_resolved.json").write_text(json.dumps(config))
    if per_user is not None:
        pd.DataFrame({"u": np.arange(USERS), "recall@50": per_user}).to_parquet(run_dir / "per_user_test.parquet")
    (run_dir / "metrics.json").write_text(json.dumps({"metrics": metrics, "summary": summary or {}}))


# ---------------------------------------------------------------- numbers of the table
# aggregator -> seed -> (test/recall@50, test/ndcg@50, val/recall@50); "ndcg" is missing for one gat seed
VALUES = {
    "mean": {0: (0.30, 0.15, 0.29), 1: (0.32, 0.17, 0.31), 2: (0.31, 0.16, 0.30)},
    "gat": {0: (0.25, 0.12, 0.24), 1: (0.29, None, 0.26)},
    "sum": {0: (0.08, 0.04, 0.07)},
}
SUM_CI = (0.06, 0.10)
LABEL = "model=sage aggregator={} loss=bce dataset=synthetic"


def make_sweep(root: Path) -> Path:
    """6 runs: 3 aggregators x up to 3 seeds, the job folders numbered past 9 (natural order), plus an
    unfinished job (no metrics.json)."""
    job = 8
    for aggregator, seeds in VALUES.items():
        for seed, (recall, ndcg, val) in seeds.items():
            metrics = {"test/recall@50": recall, "val/recall@50": val}
            if ndcg is not None:
                metrics["test/ndcg@50"] = ndcg
            summary = None
            if aggregator == "sum":
                summary = {"test": [{"slice": "all", "metric": "recall@50", "mean": recall,
                                     "ci_low": SUM_CI[0], "ci_high": SUM_CI[1], "n_users": 100}]}
            write_run(root / str(job), record("sage", seed, aggregator=aggregator), metrics, summary)
            job += 1
    (root / str(job)).mkdir()  # a job that never finished: ignored
    (root / str(job) / "config_resolved.json").write_text(json.dumps(record()))
    return root


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    return make_sweep(tmp_path / "sweep")


def test_runs_in_launch_order_labelled_by_resolved_choices(sweep):
    runs = report.collect_runs(sweep)
    assert [Path(r["dir"]).name for r in runs] == ["8", "9", "10", "11", "12", "13"]
    assert [r["label"] for r in runs] == [*[LABEL.format("mean")] * 3, *[LABEL.format("gat")] * 2, LABEL.format("sum")]
    assert [r["rep"] for r in runs] == [(("seed", s),) for s in (0, 1, 2, 0, 1, 0)]


def test_aggregate_gives_mean_std_and_counts(sweep):
    long = report.aggregate(report.collect_runs(sweep), "test", ("recall@50", "ndcg@50"), ("val/recall@50",))
    by = {(r.run, r.metric): r for r in long.itertuples(index=False)}
    for aggregator, seeds in VALUES.items():
        label = LABEL.format(aggregator)
        recall = np.array([v[0] for v in seeds.values()])
        row = by[(label, "recall@50")]
        assert row.n == len(recall) and row.seeds == len(seeds) and row.key == "test/recall@50"
        assert row.mean == pytest.approx(recall.mean())
        if len(recall) > 1:
            assert row.std == pytest.approx(recall.std(ddof=1))
        val = by[(label, "val/recall@50")]
        assert val.key == "val/recall@50" and val.mean == pytest.approx(np.mean([v[2] for v in seeds.values()]))
    gat_ndcg = by[(LABEL.format("gat"), "ndcg@50")]  # one of two seeds lacks it: one value, no std, no interval
    assert gat_ndcg.n == 1 and gat_ndcg.seeds == 2 and gat_ndcg.mean == pytest.approx(0.12) and np.isnan(gat_ndcg.std)
    assert np.isnan(gat_ndcg.ci_low)
    single = by[(LABEL.format("sum"), "recall@50")]
    assert (single.ci_low, single.ci_high) == SUM_CI and np.isnan(single.std)
    assert np.isnan(by[(LABEL.format("mean"), "recall@50")].ci_low)  # several seeds: no per-user interval


def test_markdown_table_cells(sweep):
    table = report.results_table(report.collect_runs(sweep), "test", ("recall@50", "ndcg@50"))
    md = report.to_markdown(table).splitlines()
    assert md[0] == "| run | seeds | recall@50 | ndcg@50 |"
    assert md[2] == f"| {LABEL.format('mean')} | 3 | 0.3100 ± 0.0100 | 0.1600 ± 0.0100 |"
    gat = np.array([0.25, 0.29])
    assert md[3] == f"| {LABEL.format('gat')} | 2 | {gat.mean():.4f} ± {gat.std(ddof=1):.4f} | 0.1200 |"
    assert md[4] == f"| {LABEL.format('sum')} | 1 | 0.0800 [0.0600, 0.1000] | 0.0400 |"


# ---------------------------------------------------------------- labels
def test_labels_show_model_dataset_and_the_keys_that_differ_never_logger_seed_or_folders(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    metrics = {"test/recall@50": 0.5}
    for seed in (0, 1):  # the noise differs between seeds: seed copies, folders, git revision, progress bar
        write_run(a / f"sage_lr_low_{seed}", record("sage", seed, progress=bool(seed)), metrics)
    write_run(a / "sage_lr_high", record("sage", 0, lr=0.01), metrics)
    write_run(a / "sage_gat", record("sage", 0, aggregator="gat"), metrics)
    write_run(a / "coclick", record("coclick", 0, logger="wandb", progress=True), metrics)
    write_run(b / "sage_decay", record("sage", 0, decay=0.5), metrics)  # a second sweep folder
    runs = report.collect_runs([a, b])
    got = {Path(r["dir"]).name: r["label"] for r in runs}
    sage = "model=sage aggregator={} loss=bce dataset=synthetic model.optim.lr={} recall.decay={}"
    assert got == {
        "sage_lr_low_0": sage.format("mean", 0.005, 0.8),
        "sage_lr_low_1": sage.format("mean", 0.005, 0.8),
        "sage_lr_high": sage.format("mean", 0.01, 0.8),
        "sage_gat": sage.format("gat", 0.005, 0.8),
        # co-click reads neither aggregator nor loss; its logger (wandb) and progress bar name nothing
        "coclick": "model=coclick dataset=synthetic recall.decay=0.8",
        "sage_decay": sage.format("mean", 0.005, 0.5),  # model.triggers.decay is a copy: named once
    }
    assert report.labels(runs)[0] == got["coclick"]  # groups in the order of the folders (names in natural order)
    assert [r["seed"] for r in runs if r["label"] == got["sage_lr_low_0"]] == [0, 1]


def test_a_data_seed_is_a_repetition_not_a_configuration(tmp_path):
    for data_seed in (0, 1, 2):
        write_run(tmp_path / str(data_seed), record("coclick", 0, data_seed=data_seed),
                  {"test/recall@50": 0.1 * (data_seed + 1)})
    runs = report.collect_runs(tmp_path)
    assert {r["label"] for r in runs} == {"model=coclick dataset=synthetic"}
    assert [r["rep"] for r in runs] == [(("seed", 0), ("dataset.loader.seed", s)) for s in (0, 1, 2)]
    row = report.aggregate(runs, "test", ("recall@50",)).iloc[0]
    assert row["n"] == 3 and row["mean"] == pytest.approx(0.2) and row["std"] == pytest.approx(0.1)


# ---------------------------------------------------------------- paired differences
def paired_sweep(root: Path) -> dict[tuple[str, int], np.ndarray]:
    """popular seeds 0, 1; coclick seeds 0, 1, 2 (seed 2 has no partner); per-user values known."""
    values = {}
    for model, seeds in (("popular", (0, 1)), ("coclick", (0, 1, 2))):
        for seed in seeds:
            values[(model, seed)] = v = user_values(model, seed)
            if model == "coclick":
                v[seed::7] = np.nan  # a user without a value in one seed is left out of that seed only
            write_run(root / f"{model}{seed}", record(model, seed), {"test/recall@50": float(np.nanmean(v))},
                      per_user=v)
    return values


def test_paired_difference_pairs_users_within_the_seeds_both_groups_ran(tmp_path):
    values = paired_sweep(tmp_path)
    runs = report.collect_runs(tmp_path)
    out = report.paired_comparison(runs, "model=popular", "test", "recall@50", "all", num_resamples=200, seed=3)
    assert len(out) == 1
    row = out.iloc[0]
    assert row["run"] == "model=coclick dataset=synthetic" and row["reference"] == "model=popular dataset=synthetic"
    # independently: per user, the mean over seeds 0 and 1 (where both have a value), then the bootstrap
    a = np.stack([values[("coclick", s)] for s in (0, 1)])
    b = np.stack([values[("popular", s)] for s in (0, 1)])
    b = np.where(np.isnan(a), np.nan, b)
    a_mean, b_mean = np.nanmean(a, axis=0), np.nanmean(b, axis=0)
    expected = paired_bootstrap_diff(a_mean, b_mean, num_resamples=200, seed=3)
    assert row["users"] == USERS and row["seeds"] == "0,1" and row["slice"] == "all"
    assert (row["diff"], row["ci_low"], row["ci_high"], row["p"]) == pytest.approx(expected)
    assert row["diff"] == pytest.approx(np.mean(a_mean - b_mean))


def test_cli_compare_default_reference_and_errors(tmp_path, capsys):
    paired_sweep(tmp_path)
    text = report.main([str(tmp_path), "--metrics", "recall@50", "--resamples", "100"])
    # the first group (folders in natural order: coclick0 before popular0) is the default reference
    assert "against `model=coclick dataset=synthetic`" in text
    assert "| model=popular dataset=synthetic | 60 | 0,1 |" in text
    with pytest.raises(SystemExit) as e:
        report.main([str(tmp_path), "--compare", "model=sage"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "--compare 'model=sage' matches no label" in err


# ---------------------------------------------------------------- folders
def test_several_folders_at_once_each_run_once(tmp_path):
    make_sweep(tmp_path / "multirun" / "s1")
    write_run(tmp_path / "multirun" / "s2" / "0", record("sage", 3, aggregator="sum"), {"test/recall@50": 0.10})
    (tmp_path / "multirun" / "latest").symlink_to("s2")  # a link is not followed: s2's run counts once
    both = report.collect_runs([tmp_path / "multirun" / "s1", tmp_path / "multirun" / "s2"])
    nested = report.collect_runs(tmp_path)  # a folder of sweep folders
    assert len(both) == len(nested) == 7
    row = report.aggregate(both, "test", ("recall@50",)).set_index("run").loc[LABEL.format("sum")]
    assert row["n"] == 2 and row["mean"] == pytest.approx(0.09)


@pytest.mark.parametrize("case", ["missing", "empty", "file"])
def test_a_wrong_folder_is_one_line_and_exit_2(tmp_path, sweep, capsys, case):
    wrong = tmp_path / "wrong"
    if case == "empty":
        (wrong / "0" / ".hydra").mkdir(parents=True)  # an unfinished run only
    elif case == "file":
        wrong.write_text("x")
    with pytest.raises(SystemExit) as e:
        report.main([str(sweep), str(wrong)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and err.startswith("graphrecall.report: error: ")
    assert str(wrong) in err and "Traceback" not in err
    expected = {"missing": "no such folder", "empty": "holds no finished run", "file": "not a folder"}[case]
    assert expected in err


def test_an_unreadable_run_file_names_the_file(tmp_path, capsys):
    write_run(tmp_path / "0", record(), {"test/recall@50": 0.1})
    (tmp_path / "0" / "config_resolved.json").write_text("{not json")
    with pytest.raises(SystemExit) as e:
        report.main([str(tmp_path)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and str(tmp_path / "0" / "config_resolved.json") in err and "not readable JSON" in err


# ---------------------------------------------------------------- files
def test_cli_writes_markdown_and_the_plot_beside_it(sweep, tmp_path):
    out = tmp_path / "out" / "results.md"
    text = report.main([str(sweep), "--metrics", "recall@50", "ndcg@50", "--extra", "val/recall@50",
                        "--out", str(out), "--no-compare"])
    assert out.read_text() == text and f"| {LABEL.format('mean')} | 3 | 0.3100 ± 0.0100 |" in text
    png = out.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "![test/recall@50](results.png)" in text
    assert not list(png.parent.glob("*.tmp"))
    with pytest.raises(SystemExit):  # a plotted metric no run has
        report.main([str(sweep), "--metrics", "recall@50", "--plot", str(png), "--plot-metric", "ndcg@20"])


def test_ablation_bars_heights_and_error_bars_match_the_table(sweep):
    from matplotlib.container import BarContainer
    from matplotlib.patches import Rectangle

    from graphrecall.plots import ablation_bars

    long = report.aggregate(report.collect_runs(sweep), "test", ("recall@50",))
    fig = ablation_bars(long, "recall@50")
    ax = fig.axes[0]
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert [b.get_width() for b in bars] == pytest.approx(long["mean"].tolist())
    assert [t.get_text() for t in ax.get_yticklabels()] == [LABEL.format(a) for a in ("mean", "gat", "sum")]
    container = [c for c in ax.containers if isinstance(c, BarContainer)][0]
    segments = container.errorbar.lines[2][0].get_segments()
    spans = [(s[0][0], s[1][0]) for s in segments]  # horizontal error bars: x extents
    assert spans[0] == pytest.approx((0.31 - 0.01, 0.31 + 0.01))  # std over seeds
    assert spans[2] == pytest.approx(SUM_CI)  # the single run's bootstrap interval
    assert [t.get_text() for t in ax.texts] == ["n=3", "n=2", "n=1"]
    with pytest.raises(KeyError, match="recall@50"):
        ablation_bars(long, "ndcg@50")


# ---------------------------------------------------------------- W&B
def test_wandb_report_run_offline_holds_the_tables_and_the_plot(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    sweep = tmp_path / "2026-01-01_00-00-00_1-ab"
    paired_sweep(sweep)
    text = report.main([str(sweep), "--metrics", "recall@50", "--resamples", "100", "--wandb", "--wandb-mode",
                        "offline"])
    (run_dir,) = sweep.glob("wandb/offline-run-*")
    identity = json.loads((sweep / "wandb_run.json").read_text())
    assert identity["job_type"] == "report" and identity["group"] == f"train/{sweep.name}"
    tables = {p.name.split("_0_")[0]: json.loads(p.read_text())
              for p in run_dir.glob("files/media/table/report/*.table.json")}
    assert set(tables) == {"results", "results_long", "paired"}
    results = tables["results"]
    assert results["columns"] == ["run", "seeds", "recall@50"]
    for row in results["data"]:  # the logged cells are the printed table's
        assert "| " + " | ".join(row) + " |" in text
    paired = dict(zip(tables["paired"]["columns"], tables["paired"]["data"][0]))
    assert paired["run"] == "model=popular dataset=synthetic" and paired["users"] == USERS
    assert f"{paired['diff']:+.4f}" in text
    assert list(run_dir.glob("files/media/images/report/plot_*.png"))


def test_wandb_report_without_a_key_writes_the_spec(tmp_path, monkeypatch, capsys):
    import graphrecall.tracking

    monkeypatch.setattr(graphrecall.tracking, "has_wandb_key", lambda: False)
    sweep = tmp_path / "sweep"
    paired_sweep(sweep)
    report.main([str(sweep), "--metrics", "recall@50", "warm/recall@50", "--resamples", "50", "--wandb-report"])
    printed = capsys.readouterr().out
    spec = json.loads((sweep / "wandb_report.json").read_text())
    assert f"W&B report spec written to {sweep / 'wandb_report.json'}" in printed
    assert "pip install wandb-workspaces" in printed and "wandb sync" in printed and "--wandb-report" in printed
    assert spec["project"] == "graphrecall" and spec["groups"] == ["train/sweep"]
    assert spec["filters"] == "Metric('Group') == 'train/sweep'"
    grid = [b for b in spec["blocks"] if b["type"] == "panel_grid"]
    assert grid[0]["runset"]["filters"].startswith(spec["filters"])
    assert grid[0]["runset"]["groupby"] == ["config.choices.model", "config.dataset.name"]
    bars = [p for p in grid[0]["panels"] if p["type"] == "bar"]
    assert bars[0]["metrics"] == ["test/recall@50"]  # no warm slice in these runs: all users is the headline
    assert {p["table_name"] for p in grid[1]["panels"] if p["type"] == "summary_table"} == {"report/results",
                                                                                           "report/paired"}
    assert "model=coclick dataset=synthetic" in spec["blocks"][0]["text"]


def test_a_key_added_later_with_a_null_default_does_not_split_a_group(tmp_path):
    """Runs from before a key existed (absent) and after (null, its off default) are one group; a
    run that sets it is labelled by it."""
    old, new, fixed = record("sage", 0), record("sage", 1), record("sage", 0)
    new["model"]["refit_epochs"] = None
    fixed["model"]["refit_epochs"] = 3
    for name, cfg in (("old", old), ("new", new), ("fixed", fixed)):
        write_run(tmp_path / name, cfg, {"test/recall@50": 0.5})
    got = {Path(r["dir"]).name: r["label"] for r in report.collect_runs(tmp_path)}
    assert got["old"] == got["new"] == "model=sage aggregator=mean loss=bce dataset=synthetic"
    assert got["fixed"] == "model=sage aggregator=mean loss=bce dataset=synthetic model.refit_epochs=3"
    # where every run has the key, a null is named as before
    old["model"]["refit_epochs"] = None
    (tmp_path / "old" / "config_resolved.json").write_text(json.dumps(old))
    got = {Path(r["dir"]).name: r["label"] for r in report.collect_runs(tmp_path)}
    assert got["old"] == got["new"] == "model=sage aggregator=mean loss=bce dataset=synthetic model.refit_epochs=null"
