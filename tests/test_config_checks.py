"""No silent config traps (issue 24 item 5, issue 25 "Messages"): an added key (+key) that no code
reads is refused naming the nearest key; every numeric key is checked for type and range up front,
naming it; the schema table covers every numeric key of every shipped config; graph, Spark, cache,
fan-out, eval.ks and channel settings that would crash late or be ignored fail at the start."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from graphrecall.config_checks import ConfigError, check_evaluate_config, check_search_config, check_train_config
from graphrecall.config_schema import (
    EVALUATE_KEYS,
    STUDY_KEYS,
    SYNTHETIC_LOADER_KEYS,
    TRAIN_KEYS,
    NumberList,
    check_added_keys,
    config_items,
    hydra_task_overrides,
    spec_for,
)
from tests.conftest import CONF, ROOT, TINY, compose_train

sys.path.insert(0, str(ROOT))  # train.py

MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
DATASETS = sorted(p.stem for p in (CONF / "dataset").glob("*.yaml"))


def composed(tmp_path: Path, overrides: list[str]):
    """(config, the override list it was composed from) on the tiny synthetic world."""
    full = [*TINY, *overrides]
    return compose_train(tmp_path, full), full


# ------------------------------------------------------------------------------- added keys (+key)


def test_misspelt_added_key_fails_train_py_naming_the_nearest_key(tmp_path):
    """The trap of issue 24: Hydra suggests +key for a wrong key; +key then ran at the default lr."""
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(ROOT / "train.py"), *TINY, "model=sage", "+model.optim.learning_rate=0.01",
           f"hydra.run.dir={out}", f"data_dir={tmp_path / 'data'}", f"cache_dir={tmp_path / 'cache'}"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    assert "+model.optim.learning_rate=0.01: no code reads model.optim.learning_rate" in done.stderr
    assert "Did you mean model.optim.lr?" in done.stderr
    assert not (out / "metrics.json").exists() and not (out / "config_resolved.json").exists()


@pytest.mark.parametrize("overrides, message", [
    (["model=sage", "+model.optim.learning_rate=0.01"], r"\+model.optim.learning_rate=0.01: no code reads .* "
                                                        r"Did you mean model.optim.lr\?"),
    (["model=sage", "++model.optim.learning_rate=0.01"], r"\+\+model.optim.learning_rate=0.01: .*model.optim.lr\?"),
    (["model=coclick", "+model.pool_sise=5"], r"CoClickRecall, which receives model, takes no 'pool_sise'.*"
                                             r"Did you mean model.pool_size\?"),
    (["model=coclick", "+dataset.loader.arival_share=0.5"], r"generate_home_feed, which receives dataset.loader, "
                                                           r"takes no 'arival_share'.*dataset.loader.arrival_share\?"),
    (["model=sage", "+trainer.max_epoch=3"], r"Trainer, which receives trainer, takes no 'max_epoch'.*"
                                            r"trainer.max_epochs\?"),
    (["model=sage", "+trainer.num_nodes=abc"], r"\+trainer.num_nodes=abc: Trainer's num_nodes takes int, got 'abc'"),
    (["model=sage", "+lr=0.01"], r"\+lr=0.01: no code reads lr \(the top level is not passed"),
])
def test_added_keys_no_code_reads_are_refused(tmp_path, overrides, message):
    cfg, full = composed(tmp_path, overrides)
    with pytest.raises(ConfigError, match=message):
        check_train_config(cfg, full)


def test_added_keys_that_code_reads_are_accepted_and_reach_it(tmp_path):
    import train as train_app

    cfg, full = composed(tmp_path, ["model=sage", "+trainer.num_nodes=2", "++model.optim.lr=0.01"])
    check_train_config(cfg, full)  # a Lightning Trainer argument; ++ on a key that exists is a plain override
    assert cfg.model.optim.lr == 0.01 and cfg.model.trainer.num_nodes == 2
    arrival = ["+dataset.loader.arrival_share=0.5", "+dataset.loader.fresh_boost=4.0"]
    cfg, full = composed(tmp_path, ["model=coclick", *arrival])
    check_train_config(cfg, full)
    metrics, objects = train_app.train(cfg)
    contents = objects["dataset"].contents
    start = objects["dataset"].clicks["timestamp"].min()
    # round(0.5 x 200) of the tiny world's contents are published during the log: the share reached the generator
    assert (contents["published_at"] > start).sum() == 100
    assert 0.0 <= metrics["test/recall@50"] <= 1.0


def test_added_keys_of_another_composition_are_not_checked(tmp_path):
    """evaluate.py checks a train run's recorded config inside its own Hydra app: only overrides the
    config was composed from count (a key it does not hold was not added to it)."""
    cfg, _ = composed(tmp_path, ["model=sage"])
    check_added_keys(cfg, ["+model.optim.learning_rate=0.01"])
    assert hydra_task_overrides("train") == []  # no Hydra app runs here


def test_evaluate_refuses_an_added_key(tmp_path):
    ecfg = OmegaConf.load(CONF / "evaluate.yaml")
    ecfg.pop("hydra")
    ecfg.run_dir = str(tmp_path)
    OmegaConf.update(ecfg, "eval.export.kk", 10, force_add=True)
    with pytest.raises(ConfigError, match=r"\+eval.export.kk=10: no code reads .*Did you mean eval.export.k\?"):
        check_evaluate_config(ecfg, ["+eval.export.kk=10"])
    with pytest.raises(ConfigError, match=r"eval.ks=\[0, 50\]"):
        check_evaluate_config(OmegaConf.merge(ecfg, {"eval": {"ks": [0, 50], "export": {"kk": 10}}}), [])


# ------------------------------------------------------------------------------- types and ranges


def _file(tmp_path: Path) -> str:
    path = tmp_path / "not_a_folder"
    path.write_text("x")
    return str(path)


BAD_VALUES = [
    (["model=sage", "model.sampling.fanouts=abc"], r"model.sampling.fanouts='abc': expected a non-empty list of "
                                                    r"whole numbers >= 1"),
    (["model=sage", "model.cold_start.share=abc"], r"model.cold_start.share='abc': expected a number in \[0, 1\]"),
    (["model=coclick", "+dataset.loader.arrival_share=abc"], r"dataset.loader.arrival_share='abc': expected a number "
                                                            r"in \[0, 1\)"),
    (["model=sage", "model.sampling.fanouts=[-1,5]"], r"model.sampling.fanouts=\[-1, 5\] is out of range"),
    (["model=sage", "model.sampling.fanouts=[5]"], r"model.sampling.fanouts=\[5\]: expected one whole number >= 1 "
                                                   r"per aggregation layer \(model.encoder.num_layers=2\)"),
    (["model=m2grl", "model.sampling.batching=full", "model.sampling.fanouts=[5,5,5]"], "per aggregation layer"),
    (["model=coclick", "eval.ks=[0,50]"], r"eval.ks=\[0, 50\] is out of range: expected a value in \[1, \+inf\)"),
    (["model=coclick", "eval.ks=[20]"], r"eval.ks=\[20\]: expected a list that includes 50"),
    (["model=coclick", "eval.ks=[50,50]"], r"eval.ks=\[50, 50\]: expected a non-empty list of distinct"),
    (["model=coclick", "graph.session_days=0"], r"graph.session_days=0 is out of range: expected a value in \(0,"),
    (["model=coclick", "graph.session_days=0.000001"], "graph.session_days=1e-06: expected a session of at least one "
                                                       "second"),
    (["model=coclick", "graph.min_count=0"], "graph.min_count=0 is out of range"),
    (["model=coclick", "graph.top_k=abc"], "graph.top_k"),
    (["model=coclick", "graph.weighting=rows"], "graph.weighting='rows': expected one of row"),
    (["model=coclick", "dataset.split.temporal.window_days=0"], "dataset.split.temporal.window_days=0 is out of range"),
    (["model=coclick", "graph.spark.shuffle_partitions=0"], "graph.spark.shuffle_partitions=0 is out of range"),
    (["model=coclick", "graph.backend=spark", "graph.spark.master=foo"], r"graph.spark.master='foo': expected a Spark "
                                                                        r"master URL: local, local\[N\]"),
    (["model=dice", "graph.spark.master='local[0]'"], r"graph.spark.master='local\[0\]'"),
    (["model=coclick", "recall.max_triggers=0"], "recall.max_triggers=0 is out of range"),
    (["model=coclick", "recall.popularity_beta=abc"], "recall.popularity_beta='abc': expected a number, or a "
                                                      "non-empty list"),
    (["model=sage_next_click", "model.triggers.popularity_beta=[0,abc]"],
     r"model.triggers.popularity_beta=\[0, 'abc'\]"),
    (["model=dice", "model.dice.ips_cap=abc"], "model.dice.ips_cap='abc': expected a number > 0 or median or null"),
    (["model=mf", "model.optim.lr=0"], "model.optim.lr=0 is out of range"),
    (["model=sage", "model.encoder.dropout=1.0"], r"model.encoder.dropout=1.0 is out of range: expected a value in "
                                                  r"\[0, 1\)"),
    (["model=coclick", "seed=1.5"], "seed=1.5: expected a whole number >= 0"),
    (["model=coclick", "eval.bootstrap.confidence=1"], "eval.bootstrap.confidence=1 is out of range"),
    (["model=sage", "recall.channels.new.slots=1", "recall.channels.new.score=side_info", "model.encoder.fields=[]"],
     r"recall.channels.new.score=side_info: model.encoder.fields=\[\] gives the encoder no side-info field"),
    (["model=sage", "recall.channels.new.slots=60"], r"recall.channels.new.slots=60 is out of range: expected a value "
                                                     r"in \[0, 50\]"),
    (["model=sage", "recall.channels.rare.slots=[0,10,55]"],
     r"recall.channels.rare.slots=\[0, 10, 55\] is out of range"),
    (["model=sage", "recall.channels.new.slots=30", "recall.channels.rare.slots=[0,30]"],
     r"the channels' slots \{'new': 30, 'rare': 30\} add up to 60 .* more than the 50 slots of a list"),
]


@pytest.mark.parametrize("overrides, message", BAD_VALUES, ids=[" ".join(o) for o, _ in BAD_VALUES])
def test_bad_values_fail_at_start_naming_the_key(tmp_path, overrides, message):
    cfg, full = composed(tmp_path, overrides)
    with pytest.raises(ConfigError, match=message):
        check_train_config(cfg, full)


def test_cache_dir_on_a_file_fails_at_start_and_before_a_build(tmp_path):
    from graphrecall.graphs.cache import cached

    path = _file(tmp_path)
    cfg, full = composed(tmp_path, ["model=coclick"])
    cfg.cache_dir = path
    with pytest.raises(ConfigError, match=f"cache_dir={re.escape(path)} is a file, not a folder"):
        check_train_config(cfg, full)
    cfg.cache_dir = f"{path}/graphs"
    with pytest.raises(ConfigError, match=f"cache_dir={re.escape(path)}/graphs lies under {re.escape(path)}, which is "
                                          "a file"):
        check_train_config(cfg, full)
    builds = []
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        cached(path, "content", {"a": 1}, lambda: builds.append(1))
    assert builds == []  # refused before the (expensive) build, not after it
    assert cached(str(tmp_path / "new" / "cache"), "content", {"a": 1}, lambda: {"x": 1}) == {"x": 1}


@pytest.mark.parametrize("overrides", [
    ["model=sage", "model.sampling.fanouts=[10,5]"],
    ["model=coclick", "eval.ks=[10,50,100]", "graph.top_k=0", "graph.session_days=0.5"],
    ["model=sage", "recall.channels.new.slots=[0,20]", "recall.channels.rare.slots=30"],
    ["model=sage", "recall.channels.new.slots=1", "recall.channels.new.score=side_info"],
    ["model=coclick", "graph.backend=spark", "graph.spark.master='local[2]'", "graph.spark.shuffle_partitions=4"],
    ["model=coclick", "cache_dir=null", "dataset.split.temporal.window_days=null"],
])
def test_valid_values_pass(tmp_path, overrides):
    cfg, full = composed(tmp_path, overrides)
    check_train_config(cfg, full)


# ------------------------------------------------------------------------------- the study config


def test_study_config_types_and_fields_are_checked():
    from graphrecall.search import DEFAULTS, load_study_config

    for path in sorted((CONF / "hparams_search").glob("*.yaml")):
        check_search_config(load_study_config(path.stem))  # every shipped study is valid
    with pytest.raises(ValueError, match="hparams_search.workers='abc': expected an? (whole number|integer) >= 1"):
        check_search_config(load_study_config("sage", ["workers=abc"]))  # (graphrecall.search checks it too)
    with pytest.raises(ConfigError, match="hparams_search.sampler.n_startup_trials='abc': expected a whole number"):
        check_search_config(load_study_config("sage", ["sampler.n_startup_trials=abc"]))
    with pytest.raises(ConfigError, match="hparams_search.pruner.n_warmup_steps=-1 is out of range"):
        check_search_config(load_study_config("sage", ["pruner.n_warmup_steps=-1"]))
    with pytest.raises(ConfigError, match="hparams_search.n_trails: not a field .*did you mean n_trials"):
        check_search_config(load_study_config("sage", ["n_trails=5"]))
    with pytest.raises(ConfigError, match="hparams_search.sampler.n_startup_trails: TPESampler takes no "
                                          "'n_startup_trails'; did you mean n_startup_trials"):
        check_search_config(load_study_config("sage", ["sampler.n_startup_trails=3"]))
    scfg = load_study_config("sage")
    scfg.params["model.optim.lr"].low = 0.1  # above its high, 0.01
    with pytest.raises(ConfigError, match=r"hparams_search.params.model.optim.lr: expected low < high"):
        check_search_config(scfg)
    scfg.params["model.optim.lr"].low = "abc"
    with pytest.raises(ConfigError, match=r"hparams_search.params.model.optim.lr.low='abc': expected a number"):
        check_search_config(scfg)
    assert set(load_study_config("sage")) == set(DEFAULTS)


# ------------------------------------------------------------------------------- schema coverage


def numeric(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    return isinstance(value, list) and any(numeric(v) for v in value)


def uncovered_numeric_keys(cfg, table) -> list[str]:
    """The keys of ``cfg`` holding a number (or numbers) that ``table`` does not type."""
    return sorted(k for k, v in config_items(cfg) if numeric(v) and spec_for(k, table) is None)


def test_uncovered_keys_are_found():
    """The coverage check itself: a new numeric key without a table entry is reported."""
    cfg = OmegaConf.create({"model": {"pool_size": 5, "new_knob": 3, "grid": [0.1, 0.2], "name": "x"},
                            "recall": {"channels": {"any": {"slots": 2}}}})
    assert uncovered_numeric_keys(cfg, TRAIN_KEYS) == ["model.grid", "model.new_knob"]


@pytest.mark.parametrize("overrides", [[f"model={m}"] for m in MODELS] + [[f"dataset={d}"] for d in DATASETS],
                         ids=lambda o: o[0])
def test_every_numeric_key_of_every_model_and_dataset_config_is_in_the_table(tmp_path, overrides):
    full = [*overrides, "graph=multi", "aggregator=gat", "trainer=ddp", "logger=wandb"]
    cfg = compose_train(tmp_path, full)
    assert uncovered_numeric_keys(cfg, TRAIN_KEYS) == []
    if overrides[0] != "dataset=custom":  # custom needs its folder (???)
        check_train_config(cfg, full)  # and the shipped values pass their checks


def yaml_files() -> list[tuple[Path, str, dict]]:
    """(file, its package: the dotted prefix of its keys, its mapping) for every config file."""
    out = []
    for path in sorted(CONF.rglob("*.yaml")):
        text = path.read_text()
        package = re.search(r"^# @package (\S+)", text, re.MULTILINE)
        group = path.parent.relative_to(CONF).as_posix().replace("/", ".")
        if group == "hparams_search":  # loaded on its own by graphrecall.search, not a group of train.yaml
            group = "."
        prefix = package.group(1) if package else group
        out.append((path, "" if prefix in ("_global_", ".") else prefix, yaml.safe_load(text) or {}))
    return out


def table_of(path: Path) -> dict:
    if path.parent.name == "hparams_search":
        return STUDY_KEYS
    return EVALUATE_KEYS if path.name == "evaluate.yaml" else TRAIN_KEYS


def test_every_numeric_key_of_every_config_file_is_in_its_table():
    """Groups composed above only through one option (debias, experiment, loss...): their files'
    keys, where the file puts them."""
    for path, prefix, data in yaml_files():
        data = {k: v for k, v in data.items() if k not in ("defaults", "hydra")}
        if prefix:
            for part in reversed(prefix.split(".")):
                data = {part: data}
        missing = uncovered_numeric_keys(OmegaConf.create(data), table_of(path))
        assert missing == [], f"{path.relative_to(ROOT)}: numeric keys without a table entry: {missing}"


def documented_types(path: Path, prefix: str) -> dict[str, str]:
    """``{dotted key: int | float}`` for every line ``key: value  # (int...)`` / ``# (float...)``."""
    found, stack = {}, []
    for line in path.read_text().splitlines():
        m = re.match(r"^(\s*)([A-Za-z_]\w*):(.*)$", line)
        if not m:
            continue
        indent = len(m.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m.group(2)))
        kind = re.search(r"#\s*\((int|float)\b", m.group(3))
        if kind:
            found[".".join(p for p in [prefix, *(k for _, k in stack)] if p)] = kind.group(1)
    return found


def test_every_key_documented_as_int_or_float_is_in_its_table_with_that_type():
    """A key whose YAML comment says ``(int)`` / ``(float)`` (null by default, too) is typed alike."""
    checked = 0
    for path, prefix, _ in yaml_files():
        for key, kind in documented_types(path, prefix).items():
            if key.startswith("hydra."):  # Hydra's own settings and callbacks: not the run's
                continue
            spec = spec_for(key, table_of(path))
            assert spec is not None, f"{path.relative_to(ROOT)}: {key} is documented ({kind}) but not in the table"
            item = spec.item if isinstance(spec, NumberList) else spec
            where = f"{path.relative_to(ROOT)}: {key}"
            assert item.kind.__name__ == kind, f"{where} is documented {kind}, the table says {item.kind.__name__}"
            checked += 1
    assert checked > 80  # the parser found the comments


def test_every_numeric_field_of_the_synthetic_generator_is_in_the_table():
    """``dataset.loader.<field>`` overrides go to :class:`SyntheticConfig`: each numeric field typed alike."""
    from graphrecall.data.synthetic import SyntheticConfig

    hints = typing.get_type_hints(SyntheticConfig)
    for field in dataclasses.fields(SyntheticConfig):
        if hints[field.name] not in (int, float):
            continue
        spec = SYNTHETIC_LOADER_KEYS.get(f"dataset.loader.{field.name}")
        assert spec is not None, field.name
        assert spec.kind is hints[field.name], field.name
        spec.check(field.name, field.default)  # the defaults pass
