"""Issue 12: nothing silently wrong. Crafted files cannot run code, configs and folds are checked
before any work, runs never share or overwrite a folder."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from graphrecall.checkpoints import load_checkpoint_file
from graphrecall.config_checks import ConfigError, check_evaluate_config, check_train_config
from tests.conftest import CONF, ROOT, compose_train

sys.path.insert(0, str(ROOT))
import evaluate as evaluate_app  # noqa: E402
import train as train_app  # noqa: E402


def _plant_marker(path: str) -> dict:
    """What a crafted checkpoint would run if it were loaded with weights_only=False."""
    Path(path).write_text("code ran")
    return {}


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (_plant_marker, (self.marker,))


def _crafted_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "marker"
    path = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"run_config": _Payload(str(marker))}}, path)
    return path, marker


def _evaluate_cfg(**values):
    ecfg = OmegaConf.load(CONF / "evaluate.yaml")
    ecfg.pop("hydra")
    for k, v in values.items():
        OmegaConf.update(ecfg, k, v)
    return ecfg


def test_crafted_checkpoint_is_refused_without_running_code(tmp_path):
    path, marker = _crafted_checkpoint(tmp_path)
    with pytest.raises(ValueError, match="refused"):
        load_checkpoint_file(path)
    with pytest.raises(ValueError, match="crafted.ckpt.*refused"):
        evaluate_app.evaluate(_evaluate_cfg(ckpt_path=str(path), run_dir=str(tmp_path)))
    assert not marker.exists()


def test_text_file_as_checkpoint_names_the_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a checkpoint\n")
    with pytest.raises(ValueError, match="notes.txt is not a readable torch checkpoint"):
        load_checkpoint_file(path)
    with pytest.raises(FileNotFoundError, match="missing.ckpt not found"):
        load_checkpoint_file(tmp_path / "missing.ckpt")


def test_resume_from_a_crafted_checkpoint_is_refused(tiny_cfg, tmp_path):
    path, marker = _crafted_checkpoint(tmp_path)
    cfg = tiny_cfg(["model=sage", "trainer.enable_progress_bar=false", "trainer.max_epochs=1",
                    f"model.resume_from={path}"])
    with pytest.raises(ValueError, match="refused"):
        train_app.train(cfg)
    assert not marker.exists()


# ----------------------------------------------------------------------------- config checks

BAD_SETTINGS = [
    (["model=coclick", "graph.top_k=-1"], "graph.top_k=-1 is out of range"),
    (["model=coclick", "recall.share=1.5"], r"recall.share=1.5 is out of range: expected a value in \[0, 1\]"),
    (["model=coclick", "recall.share=-0.1"], "recall.share"),
    (["model=coclick", "dataset.graph_tau=1.0"], r"graph.tau \(dataset.graph_tau\)=1.0 is out of range"),
    (["model=sage", "dataset.graph_tau=2"], "graph.tau"),
    (["model=sage", "trainer.max_epochs=0"], "trainer.max_epochs=0 is out of range"),
    (["model=mf", "trainer.max_epochs=-1"], "trainer.max_epochs"),
    (["model=coclick", "eval.export.enabled=true", "eval.export.k=0"], "eval.export.k=0"),
    (["model=coclick", "model.pool_size=0"], "model.pool_size=0"),
    (["model=sage", "model.sampling.neighbors=0"], "model.sampling.neighbors=0"),
    (["model=sage", "eval.folds=[test]"], r"eval.folds=\['test'\]: trainable models .* must be val"),
    (["model=dice", "eval.folds=[test,val]"], "eval.folds"),
    (["model=coclick", "eval.folds=[train]"], "eval.folds"),
    (["model=coclick", "eval.folds=[]"], "eval.folds is empty"),
]


@pytest.mark.parametrize("overrides,message", BAD_SETTINGS, ids=[" ".join(o) for o, _ in BAD_SETTINGS])
def test_out_of_range_settings_fail_at_start_naming_the_key(tiny_cfg, overrides, message):
    cfg = tiny_cfg(overrides)
    with pytest.raises(ConfigError, match=message):
        train_app.train(cfg)
    assert not Path(cfg.run_dir).exists()  # nothing was started


def test_valid_settings_pass_the_checks(tiny_cfg):
    for overrides in (["model=coclick", "eval.folds=[test]", "graph.top_k=0", "recall.share=0"],
                      ["model=sage"], ["model=m2grl", "graph=multi"], ["model=dice"], ["model=popular"]):
        check_train_config(tiny_cfg(overrides))


def test_evaluate_refuses_to_score_test_fold_artefacts_on_val(tmp_path):
    with pytest.raises(ConfigError, match="fold=val with run_dir=: the run's saved artefacts were fitted on the test"):
        evaluate_app.evaluate(_evaluate_cfg(run_dir=str(tmp_path), fold="val"))
    with pytest.raises(ConfigError, match="export.k=-5"):
        evaluate_app.evaluate(_evaluate_cfg(run_dir=str(tmp_path), **{"export.enabled": True, "export.k": -5}))
    check_evaluate_config(_evaluate_cfg(ckpt_path="x.ckpt", fold="val"))  # a checkpoint re-embeds the val fold


# ------------------------------------------------------------------------------- id round trip


def _custom_folder(folder: Path, seed: int = 0) -> tuple[list[str], list[str]]:
    """A small CSV click log with zero-padded ids over 30 days (every id would lose its zeros as int)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    users = [f"{i:04d}" for i in range(1, 41)]
    contents = [f"0{i:03d}" for i in range(1, 31)]
    t0 = int(pd.Timestamp("2026-01-01", tz="UTC").timestamp())
    rows = [(users[u], contents[min(int(rng.zipf(1.6)) - 1 + (u % 5), 29)], t0 + int(rng.integers(0, 30 * 86_400)))
            for u in rng.integers(0, len(users), 1500)]
    folder.mkdir(parents=True)
    pd.DataFrame(rows, columns=["user_id", "content_id", "timestamp"]).to_csv(folder / "clicks.csv", index=False)
    pd.DataFrame({"content_id": contents, "style": [f"s{i % 3}" for i in range(30)],
                  "space": [f"r{i % 4}" for i in range(30)], "designer": ["d"] * 30,
                  "products": ["p1|p2"] * 30, "categories": ["k"] * 30}).to_csv(folder / "contents.csv", index=False)
    (folder / "users.csv").write_text("user_id\n" + "\n".join(users) + "\n")
    return users, contents


def test_csv_ids_go_out_exactly_as_they_came_in(tmp_path):
    import pandas as pd

    users, contents = _custom_folder(tmp_path / "logs")
    (tmp_path / "export_users.csv").write_text("user_id\n0001\n0040\n")
    cfg = compose_train(tmp_path, ["dataset=custom", f"dataset.loader.folder={tmp_path / 'logs'}", "model=coclick",
                                   "eval.bootstrap.num_resamples=20",
                    "eval.export.enabled=true", f"eval.export.users_file={tmp_path / 'export_users.csv'}",
                    "eval.export.k=5"])
    train_app.train(cfg)
    recs = pd.read_parquet(Path(cfg.run_dir) / "recommendations.parquet")
    assert sorted(recs["user_id"].unique()) == ["0001", "0040"]
    assert set(recs["content_id"]) <= set(contents) and len(recs) == 10


# ------------------------------------------------------------------------------- run integrity


def test_a_finished_run_folder_is_never_reused(tiny_cfg):
    cfg = tiny_cfg(["model=popular"])
    train_app.train(cfg)
    finished = (Path(cfg.run_dir) / "metrics.json").read_text()
    with pytest.raises(FileExistsError, match=r"run already holds a finished run \(metrics.json\)"):
        train_app.train(tiny_cfg(["model=coclick"]))
    assert (Path(cfg.run_dir) / "metrics.json").read_text() == finished


def test_run_folders_of_two_launches_differ(tmp_path):
    import subprocess

    from hydra import compose, initialize_config_dir

    from graphrecall.runs import RUN_ID

    code = "from graphrecall.runs import RUN_ID; print(RUN_ID)"
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT / "src")}
    ids = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stdout.strip()
           for _ in range(2)}
    assert len(ids) == 2 and RUN_ID not in ids
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for name, keys in (("train", ("run", "sweep")), ("evaluate", ("run",))):
            hcfg = compose(name, return_hydra_config=True)
            for key in keys:
                assert OmegaConf.select(hcfg, f"hydra.{key}.dir").endswith("_" + RUN_ID), (name, key)


def test_sigterm_exits_nonzero_with_a_log_line(caplog):
    import os
    import signal
    import time

    from pytorch_lightning.utilities.exceptions import SIGTERMException

    from graphrecall.runs import EXIT_SIGTERM, terminated_exits_nonzero

    before = signal.getsignal(signal.SIGTERM)
    with caplog.at_level("ERROR", logger="graphrecall.runs"):
        with pytest.raises(SystemExit) as exit_info:
            with terminated_exits_nonzero("train x"):
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
                pytest.fail("SIGTERM did not stop the run")
    assert exit_info.value.code == EXIT_SIGTERM == 143
    assert "train x: terminated by SIGTERM" in caplog.text
    assert signal.getsignal(signal.SIGTERM) == before  # restored
    with pytest.raises(SystemExit) as exit_info:  # Lightning's own exception is a SystemExit without code (0)
        with terminated_exits_nonzero("train y"):
            raise SIGTERMException()
    assert exit_info.value.code == 143


def test_sigterm_during_training_exits_143_without_metrics(tmp_path):
    import os
    import signal
    import subprocess
    import time

    run = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "train.py"), "model=sage", "dataset=synthetic", "dataset.loader.preset=tiny",
           "trainer.max_epochs=500", "trainer.early_stopping_patience=0", "trainer.enable_progress_bar=false",
           "model.optim.batch_size=256", f"hydra.run.dir={run}", f"data_dir={tmp_path / 'data'}",
           f"cache_dir={tmp_path / 'cache'}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while not (run / "checkpoints" / "last.ckpt").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, out[-3000:]
    assert "terminated by SIGTERM" in out and not (run / "metrics.json").exists()


def test_readme_m2grl_multi_view_command_fits_on_tiny_data(tiny_cfg):
    # README, stage 2: python train.py model=m2grl graph=multi 'graph.views=[style,space]'
    metrics, objects = train_app.train(tiny_cfg(["model=m2grl", "graph=multi", "graph.views=[style,space]",
                                                 "trainer.max_epochs=1", "trainer.enable_progress_bar=false"]))
    assert "test/recall@50" in metrics
    assert set(objects["model"]._views) == {"style", "space"}


# ------------------------------------------------------------------------------- users files and split shares


@pytest.mark.parametrize("content, expected", [
    (b"", r"not a readable CSV/parquet users file"),
    (b"user_id\n", r"lists no user"),
    (b"user_id,x\n1,2,3,4\n5,6\n", r"not a readable CSV/parquet users file .*does not match length of data"),
    (b"user_id\n1\n\n", None),  # a trailing blank line is not an empty id
    (b"uid\n1\n", r"expected a 'user_id' column, found \['uid'\]"),
    (b"\xff\xfe\x00bad", r"not a readable CSV/parquet users file"),
])
def test_users_file_errors_name_the_file(tmp_path, content, expected):
    from graphrecall.data.schema import DataValidationError
    from graphrecall.evaluation import read_users_file

    path = tmp_path / "users.csv"
    path.write_bytes(content)
    users = pd.DataFrame({"user_id": ["1", "5"]})
    if expected is None:
        assert read_users_file(str(path), users).tolist() == [0]
        return
    with pytest.raises(DataValidationError, match=expected) as err:
        read_users_file(str(path), users)
    assert str(path) in str(err.value)


def test_users_file_with_float_ids_is_refused(tmp_path):
    from graphrecall.data.schema import DataValidationError
    from graphrecall.evaluation import read_users_file

    path = tmp_path / "users.parquet"
    pd.DataFrame({"user_id": [1.0, 5.0]}).to_parquet(path)
    with pytest.raises(DataValidationError, match=r"users.parquet: 'user_id' holds floating-point values"):
        read_users_file(str(path), pd.DataFrame({"user_id": [1, 5]}))


def test_unknown_export_users_fail_before_training(tiny_cfg, tmp_path):
    from graphrecall.data.schema import DataValidationError

    (tmp_path / "ghosts.csv").write_text("user_id\nnobody\n")
    cfg = tiny_cfg(["model=sage", "eval.export.enabled=true", f"eval.export.users_file={tmp_path / 'ghosts.csv'}"])
    with pytest.raises(DataValidationError, match=r"ghosts.csv: 1 user_id\(s\) not in the dataset"):
        train_app.train(cfg)
    assert not (Path(cfg.run_dir) / "checkpoints").exists()  # refused before any training


@pytest.mark.parametrize("override, expected", [
    ("dataset.split.intervened.intervened_fraction=2", r"intervened_fraction=2 is out of range: expected a value in \(0, 1\]"),
    ("dataset.split.intervened.train_share=0", r"train_share=0 is out of range"),
    ("dataset.split.intervened.val_share=0.8", r"train_share \+ val_share = 1.05: expected below 1"),
])
def test_intervened_split_shares_are_checked_at_start(tiny_cfg, override, expected):
    from graphrecall.config_checks import ConfigError

    cfg = tiny_cfg(["model=popular", "dataset.split.kind=intervened", override])
    with pytest.raises(ConfigError, match=expected):
        train_app.train(cfg)
