"""Every command line of README.md runs on tiny data in this suite.

``README_COMMANDS`` maps each command line the README shows (in code blocks, or inline in backticks)
to the test that runs it on tiny data: the command's own arguments plus overrides that shrink the
data (tiny synthetic world, one or two epochs). A command added to the README without a test here,
or a mapping to a test that no longer exists, fails ``test_every_readme_command_has_a_test``.
Commands that cannot run on one CPU machine (a Postgres server, several nodes, a GPU) map to the
test of their nearest runnable form, and the README says what has not been run.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, TINY, assert_pool_weight_choice, compose_train

README = ROOT / "README.md"
RUNNERS = re.compile(r"^(?:[A-Z_]+=\S+\s+)*(?:\.venv/bin/python|python|make|bash)\s")
HERE = "tests/test_readme_commands.py"

README_COMMANDS: dict[str, str] = {
    "make train": "tests/test_train_e2e.py::test_make_train_flagship_sweep_and_report",
    "make test": ".ci/run",  # the suite itself; CI runs `make test` (checked below), which runs `make install`
    "make install": ".ci/run",
    ".venv/bin/python train.py model=coclick dataset=synthetic dataset.loader.preset=tiny":
        "tests/test_train_e2e.py::test_every_model_config_trains_and_evaluates",
    ".venv/bin/python train.py -m model=popular,coclick,sage_next_click_confident dataset=synthetic seed=0,1 "
    "trainer.max_epochs=5": "tests/test_train_e2e.py::test_make_train_flagship_sweep_and_report",
    ".venv/bin/python train.py model=coclick dataset=synthetic":
        "tests/test_train_e2e.py::test_every_model_config_trains_and_evaluates",
    ".venv/bin/python train.py -m model=popular,coclick seed=0,1,2": f"{HERE}::test_readme_sweep_of_models_and_seeds",
    ".venv/bin/python train.py -m experiment=baselines dataset=synthetic":
        "tests/test_train_e2e.py::test_cli_multirun_and_report",
    ".venv/bin/python -m graphrecall.report multirun/train/<date_time>": f"{HERE}::test_readme_sweep_of_models_and_seeds",
    ".venv/bin/python evaluate.py run_dir=outputs/train/<date_time> eval.export.enabled=true":
        "tests/test_train_e2e.py::test_evaluate_reproduces_train_metrics_and_exports",
    ".venv/bin/python -m graphrecall.report multirun/train/<date_time> --wandb":
        "tests/test_report.py::test_wandb_report_run_offline_holds_the_tables_and_the_plot",
    "python -m graphrecall.report <sweep> --wandb": "tests/test_report.py::test_wandb_report_run_offline_holds_the_tables_and_the_plot",
    "python -m graphrecall.search hparams_search=<study>":
        "tests/test_search.py::test_study_writes_plots_and_a_rerun_command_that_runs_as_printed",
    "python -m graphrecall.best_setting <study folder> [--seeds ...]":
        "tests/test_best_setting.py::test_cli_needs_no_second_argument_and_prints_a_quoted_command",
    ".venv/bin/python -m graphrecall.best_setting outputs/optuna/sage":
        "tests/test_search.py::test_study_writes_plots_and_a_rerun_command_that_runs_as_printed",
    ".venv/bin/python train.py experiment=backtest_synthetic model=popular,coclick":
        "tests/test_backtest.py::test_backtest_runs_from_one_command_and_pools",
    ".venv/bin/python -m graphrecall.backtest multirun/backtest/<date_time> --baseline model=coclick":
        "tests/test_backtest.py::test_backtest_runs_from_one_command_and_pools",
    "python -m graphrecall.backtest <sweep> [<sweep> ...]":
        "tests/test_backtest.py::test_backtest_runs_from_one_command_and_pools",
    ".venv/bin/python train.py model=sage aggregator=gat dataset=movielens100k": f"{HERE}::test_readme_gat_on_movielens",
    ".venv/bin/python -m graphrecall.search hparams_search=sage dataset=synthetic":
        "tests/test_search.py::test_sage_trial_is_pruned_through_the_lightning_loop",
    ".venv/bin/python evaluate.py ckpt_path=outputs/train/<date_time>/checkpoints/<best>.ckpt":
        "tests/test_sage_e2e.py::test_checkpoint_holds_config_and_reevaluates",
    ".venv/bin/python train.py model=sage logger=wandb": "tests/test_sage_e2e.py::test_wandb_offline_logger",
    ".venv/bin/python train.py model=sage trainer=ddp trainer.accelerator=cpu":
        "tests/test_sage_e2e.py::test_ddp_on_two_cpu_processes_matches_single_process",
    ".venv/bin/python train.py model=coclick graph.backend=spark \"graph.spark.master='local[2]'\"":
        "tests/test_graphs_spark.py::test_model_trains_and_evaluates_the_same_on_both_backends",
    ".venv/bin/python train.py model=sage graph.backend=spark graph.spark.work_dir=/data/graphs":
        "tests/test_graphs_spark.py::test_model_trains_and_evaluates_the_same_on_both_backends",
    ".venv/bin/python -m graphrecall.search hparams_search=sage dataset=synthetic hparams_search.workers=2":
        "tests/test_search.py::test_two_worker_processes_share_one_study_and_run_each_trial_once",
    # a Postgres server is not available here: the same storage code path runs on an SQLite URL
    "python -m graphrecall.search hparams_search=sage hparams_search.storage=postgresql://user@db/optuna "
    "hparams_search.worker_rank=3":
        "tests/test_search.py::test_two_worker_processes_share_one_study_and_run_each_trial_once",
    # several nodes and GPUs are not available here: DDP runs as two CPU processes on one node
    "MASTER_ADDR=node0 MASTER_PORT=29500 WORLD_SIZE=8 NODE_RANK=$k .venv/bin/python train.py model=sage trainer=ddp "
    "trainer.accelerator=gpu trainer.devices=4 +trainer.num_nodes=2":
        "tests/test_sage_e2e.py::test_ddp_on_two_cpu_processes_matches_single_process",
    ".venv/bin/python benchmarks/graph_build.py": f"{HERE}::test_readme_benchmarks_run_on_tiny_data",
    "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/layer_trimming.py --preset medium --steps 20":
        "tests/test_layer_trimming.py::test_benchmark_script_runs_on_tiny_data",
    ".venv/bin/python benchmarks/lightning_overhead.py --threads 1 --limit-batches 30":
        f"{HERE}::test_readme_benchmarks_run_on_tiny_data",
    "python benchmarks/gpu_stage1.py --out $OUT/gpu_stage1.json": f"{HERE}::test_readme_benchmarks_run_on_tiny_data",
    ".venv/bin/python benchmarks/train_scale.py --presets small medium --out $OUT/scale.json":
        f"{HERE}::test_readme_benchmarks_run_on_tiny_data",
    ".venv/bin/python benchmarks/train_scale.py --presets large --models gat m2grl --limit-batches 30":
        f"{HERE}::test_readme_benchmarks_run_on_tiny_data",
    ".venv/bin/python benchmarks/train_scale.py --presets large --models mean \"model.sampling.fanouts=[10,5]\"":
        f"{HERE}::test_readme_benchmarks_run_on_tiny_data",
    "python train.py experiment=<name>": "tests/test_train_e2e.py::test_cli_multirun_and_report",
    "bash experiments/stage2/fixes.sh <dataset> [seed] [variant ...]": f"{HERE}::test_readme_stage2_study_script",
    "bash experiments/learned_recall/family_study.sh": f"{HERE}::test_readme_family_study_script",
    "bash experiments/scale/run_large_stage1.sh baselines": f"{HERE}::test_readme_large_stage1_script",
    "bash experiments/scale/run_large_stage1.sh stage1_w0 model.popularity.pool_weight=0":
        f"{HERE}::test_readme_large_stage1_script",
    ".venv/bin/python experiments/scale/pool_diagnosis.py multirun/large/stage1_w0/0":
        f"{HERE}::test_readme_large_stage1_script",
    "bash experiments/scale/run_large_stage1.sh stage1_grid \"model.popularity.pool_weight=[0.3,0.0,0.5,1.0]\" "
    "model.popularity.pool_weight_min_coverage=0.1061": f"{HERE}::test_readme_large_stage1_script",
}


def readme_commands(text: str) -> list[str]:
    """Command lines of a README: code-block lines (``\\``-continued lines joined, ``# comments``
    dropped) and inline backtick spans that start with a runner (python, make, bash)."""
    found = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if RUNNERS.match(line + " "):
                found.append(re.sub(r"\s+", " ", line))
    prose = re.sub(r"```[a-z]*\n.*?```", "", text, flags=re.S)
    for span in re.findall(r"`([^`]+)`", prose):
        span = re.sub(r"\s+", " ", span).strip()
        if RUNNERS.match(span + " "):
            found.append(span)
    return list(dict.fromkeys(found))


def _test_exists(node: str) -> bool:
    path, _, name = node.partition("::")
    tree = ast.parse((ROOT / path).read_text())
    return any(isinstance(n, ast.FunctionDef) and n.name == name for n in tree.body)


def test_readme_parser_on_a_hand_made_readme():
    text = ("intro `python train.py a=1\n  b=2` and `not a command`\n"
            "```bash\nmake x   # comment\n.venv/bin/python t.py \\\n   --k 3\necho no\n```\n")
    assert readme_commands(text) == ["make x", ".venv/bin/python t.py --k 3", "python train.py a=1 b=2"]


def test_every_readme_command_has_a_test():
    commands = readme_commands(README.read_text())
    assert len(commands) >= 20  # the parser still finds the README's commands
    missing = [c for c in commands if c not in README_COMMANDS]
    assert not missing, f"README command lines without a test in README_COMMANDS: {missing}"
    stale = [c for c in README_COMMANDS if c not in commands]
    assert not stale, f"README_COMMANDS entries no longer in the README: {stale}"
    for command, node in README_COMMANDS.items():
        if node == ".ci/run":
            assert "make test" in (ROOT / ".ci/run").read_text()
            assert re.search(r"^test: install$", (ROOT / "Makefile").read_text(), flags=re.M)
        else:
            assert _test_exists(node), f"{command!r} maps to {node}, which does not exist"


def _run(cmd: list[str], tmp_path: Path, env: dict[str, str] | None = None) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc.stdout


def test_readme_sweep_of_models_and_seeds(tmp_path):
    """README: ``train.py -m model=popular,coclick seed=0,1,2`` then ``graphrecall.report <sweep>``."""
    sweep = tmp_path / "sweep"
    _run([sys.executable, "train.py", "-m", "model=popular,coclick", "seed=0,1,2", *TINY,
          f"data_dir={tmp_path / 'data'}", f"hydra.sweep.dir={sweep}"], tmp_path)
    table = _run([sys.executable, "-m", "graphrecall.report", str(sweep)], tmp_path)
    runs = [json.loads((sweep / str(job) / "metrics.json").read_text())["metrics"] for job in range(6)]
    for model, jobs in (("popular", (0, 1, 2)), ("coclick", (3, 4, 5))):
        row = [line for line in table.split("Paired differences")[0].splitlines()
               if line.startswith(f"| model={model} dataset=synthetic |")]
        assert len(row) == 1 and row[0].split("|")[2].strip() == "3", table  # three seeds per row
        # the table's recall@50 cell is the mean over the three runs, computed here independently
        mean = np.mean([runs[j]["test/recall@50"] for j in jobs])
        assert f"{mean:.4f}" in row[0], (row[0], mean)


def test_readme_gat_on_movielens(tmp_path):
    """README: ``train.py model=sage aggregator=gat dataset=movielens100k`` on a tiny GroupLens folder."""
    from graphrecall.data.movielens import GENRES
    from tests.test_movielens import write_grouplens

    import train as train_app

    rng = np.random.default_rng(0)
    n_users, n_movies, t0 = 40, 60, 880_000_000
    flags = lambda m: "|".join("1" if g == m % len(GENRES) else "0" for g in range(len(GENRES)))  # noqa: E731
    items = [f"{m}|Film {m} (19{60 + m % 40})|01-Jan-19{60 + m % 40}|||{flags(m)}" for m in range(1, n_movies + 1)]
    users = [f"{u}|{20 + u}|{'FM'[u % 2]}|student|0000{u}" for u in range(1, n_users + 1)]
    ratings = []
    for u in range(1, n_users + 1):
        for m in rng.choice(np.arange(1, n_movies + 1), size=25, replace=False):
            ratings.append(f"{u}\t{m}\t{rng.integers(1, 6)}\t{t0 + int(rng.integers(0, 40 * 86_400))}")
    write_grouplens(tmp_path / "data" / "ml-100k", item=items, user=users, data=ratings)
    cfg = compose_train(tmp_path, ["model=sage", "aggregator=gat", "dataset=movielens100k", "trainer.max_epochs=1",
                                   "trainer.enable_progress_bar=false", "eval.bootstrap.num_resamples=20"])
    metrics, objects = train_app.train(cfg)
    assert 0.0 <= metrics["test/recall@50"] <= 1.0
    record = json.loads((Path(cfg.run_dir) / "config_resolved.json").read_text())
    assert record["model"]["aggregator"]["name"] == "gat" and record["dataset"]["name"] == "movielens100k"


def test_readme_benchmarks_run_on_tiny_data(tmp_path):
    """README: the graph-build, Lightning-overhead and GPU benchmarks, shrunk to seconds on a CPU."""
    out = _run([sys.executable, "benchmarks/graph_build.py", "--preset", "tiny"], tmp_path)
    assert "targets:" in out and "generated preset=tiny" in out
    out = _run([sys.executable, "benchmarks/lightning_overhead.py", "--threads", "1", "--limit-batches", "30",
                "--workloads", "small", "--repeats", "1", "--warmup-batches", "2"], tmp_path)
    assert "ratio Lightning/bare, whole fit" in out and "same code check" in out
    _run([sys.executable, "benchmarks/gpu_stage1.py", "--dry-run", "--out", str(tmp_path / "gpu_stage1.json")],
         tmp_path)
    assert json.loads((tmp_path / "gpu_stage1.json").read_text())
    # the training-scale benchmark: one full epoch, then a step-limited one with its projected epoch
    _run([sys.executable, "benchmarks/train_scale.py", "--presets", "tiny", "--models", "mean",
          "--out", str(tmp_path / "scale.json")], tmp_path)
    out = _run([sys.executable, "benchmarks/train_scale.py", "--presets", "tiny", "--models", "gat", "m2grl",
                "--limit-batches", "1", "--out", str(tmp_path / "scale_limited.json")], tmp_path)
    (full,) = json.loads((tmp_path / "scale.json").read_text())
    assert full["steps"] == full["epoch_steps"] >= 1 and not full["epoch_projected"]
    assert full["peak_gib"] > 0.1 and full["eval_users"] > 0
    limited = json.loads((tmp_path / "scale_limited.json").read_text())
    assert [r["model"] for r in limited] == ["gat", "m2grl"]
    for row in limited:
        assert row["steps"] == 1 < row["epoch_steps"] and row["epoch_projected"]
        assert row["epoch_s"] == pytest.approx(row["epoch_steps"] / row["steps_per_s"])
    assert "(projected)" in out
    # train.py overrides pass through to every run: k-hop subgraph batches with a per-layer fan-out
    _run([sys.executable, "benchmarks/train_scale.py", "--presets", "tiny", "--models", "mean", "--limit-batches", "1",
          "--out", str(tmp_path / "scale_fanout.json"), "model.sampling.batching=subgraph",
          "model.sampling.fanouts=[10,5]"], tmp_path)
    (fanout,) = json.loads((tmp_path / "scale_fanout.json").read_text())
    assert fanout["steps"] == 1 and fanout["eval_users"] > 0


def test_readme_stage2_study_script(tmp_path):
    """README: ``bash experiments/stage2/fixes.sh <dataset> [seed] [variant ...]`` on the tiny world."""
    extra = (f"dataset.loader.preset=tiny trainer.max_epochs=1 eval.bootstrap.num_resamples=20 "
             f"data_dir={tmp_path / 'data'}")
    out = _run(["bash", "experiments/stage2/fixes.sh", "synthetic", "0", "sage", "default"], tmp_path,
               env={"PY": sys.executable, "OUT": str(tmp_path / "out"), "EXTRA": extra})
    assert "done: sage" in out and "done: default" in out
    rows = [line for line in out.splitlines() if line.startswith("| sage") or line.startswith("| default")]
    assert len(rows) == 2, out  # the table script ran over both runs
    assert (tmp_path / "out" / "synthetic" / "seed0" / "default" / "metrics.json").exists()


def test_readme_family_study_script(tmp_path):
    """README: ``bash experiments/learned_recall/family_study.sh`` (studies, then the best config per
    family on 3 seeds), shrunk to two trials, one seed and three families on the tiny world."""
    studies, out = tmp_path / "studies", tmp_path / "runs"
    extra = f"dataset.loader.preset=tiny trainer.max_epochs=2 eval.bootstrap.num_resamples=20 data_dir={tmp_path / 'd'}"
    log = _run(["bash", "experiments/learned_recall/family_study.sh", "popular coclick sage", "0"], tmp_path,
               env={"PY": sys.executable, "STUDIES": str(studies), "OUT": str(out), "EXTRA": extra,
                    "DATASET": "synthetic", "STUDY_EXTRA": "hparams_search.n_trials=2"})
    for family in ("popular", "coclick", "sage"):
        assert f"done: {family} seed 0" in log, log
        best = json.loads((studies / f"family_{family}" / "best.json").read_text())["best"]["params"]
        record = json.loads((out / family / "seed0" / "config_resolved.json").read_text())
        for key, value in best.items():  # the seed run uses exactly the study's best parameters
            node = record
            for part in key.split("."):
                node = node[part]
            assert node == (value if not isinstance(node, str) else str(value)), (family, key, node, value)
    sage = json.loads((out / "sage" / "seed0" / "metrics.json").read_text())["metrics"]
    assert sage["test/fit/refit/epochs"] == sage["val/fit/selected_epochs"]  # refit on the test fold's window


def test_readme_large_stage1_script(tmp_path):
    """README: the `large` stage-1 runs and the pool diagnosis, on the tiny world with a 2-step budget;
    the diagnosis' served-pool health equals the one the run logged."""
    env = {"PY": sys.executable, "OUT": str(tmp_path / "out"), "PRESET": "tiny", "BATCHES": "2", "EPOCHS": "1"}
    common = [f"data_dir={tmp_path / 'data'}", "eval.bootstrap.num_resamples=20", "model.optim.batch_size=128",
              "model.next_click.num_uniform=32"]
    out = _run(["bash", "experiments/scale/run_large_stage1.sh", "baselines", f"data_dir={tmp_path / 'data'}"], tmp_path,
               env=env)
    assert "done:" in out and len(list((tmp_path / "out" / "baselines").glob("*/metrics.json"))) == 2
    out = _run(["bash", "experiments/scale/run_large_stage1.sh", "stage1_w0", "model.popularity.pool_weight=0", *common],
               tmp_path, env=env)
    run = tmp_path / "out" / "stage1_w0" / "0"
    logged = json.loads((run / "metrics.json").read_text())["metrics"]
    assert logged["val/fit/selected_epochs"] == 1
    cfg = json.loads((run / "config_resolved.json").read_text())
    assert cfg["model"]["popularity"]["pool_weight"] == 0 and cfg["trainer"]["limit_train_batches"] == 2
    out = _run([sys.executable, "experiments/scale/pool_diagnosis.py", str(run)], tmp_path)
    served = [line for line in out.splitlines() if "| served pool |" in line]
    assert len(served) == 1 and f"distinct_top10 {logged['test/fit/pool/distinct_top10']:.6g}" in served[0]
    assert any("| similarity pool (no popularity term) |" in line for line in out.splitlines())
    # the weight chosen on validation from a grid, under a coverage floor: the run records the choice and each
    # weight's validation recall and coverage, and the floor rule holds on them
    _run(["bash", "experiments/scale/run_large_stage1.sh", "stage1_grid", "model.popularity.pool_weight=[0.3,0.0,0.5,1.0]",
          "model.popularity.pool_weight_min_coverage=0.1061", *common], tmp_path, env=env)
    logged = json.loads((tmp_path / "out" / "stage1_grid" / "0" / "metrics.json").read_text())["metrics"]
    assert_pool_weight_choice(logged, [0.3, 0.0, 0.5, 1.0], 0.1061)
