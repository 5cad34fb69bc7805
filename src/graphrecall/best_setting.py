"""The best setting of an Optuna study (``graphrecall.search``), rerun on several seeds.

``python -m graphrecall.best_setting <study folder | best.json> [--seeds 0 1 2] [--trial N]
[--sweep-dir DIR] [--overrides]``

prints the command that reruns the study's best trial with ``train.py`` on each seed, scoring val
and test (a study's trials score val only)::

    cd <launch folder> && .venv/bin/python train.py -m <the trial's overrides> seed=0,1,2 \\
        hydra.sweep.dir=<output_dir>/<study>_rerun/trial_<n>_seeds_0-1-2

``--overrides`` prints the train overrides alone, one per line (for scripts:
``experiments/learned_recall/family_study.sh``). ``--trial N`` picks a trial of a multi-objective
study's Pareto front (``best_trials`` in best.json); a single-objective study's best trial needs no
argument.

The rerun overrides are the best trial's own overrides as best.json records them: the study's
``overrides``, then the command line of the search (dataset, preset, model, data folders, ...), then
the trial's sampled parameters. A key given twice keeps its last value (the one the trial ran
with). Left out, because the rerun sets them itself: ``eval.folds`` (the rerun scores val and test),
``seed`` (the rerun's seeds), ``run_dir`` and ``hydra.*`` (the rerun's own folders).

``python -m graphrecall.report <sweep dir>`` tables the rerun (``hparams_search.rerun_seeds=[0,1,2]``
of the search command runs the rerun and the table itself).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SEEDS = (0, 1, 2)
NOT_INHERITED = ("eval.folds", "seed", "run_dir")  # set by the rerun itself (see the module docstring)


def parse_overrides(overrides: Sequence[str]) -> list[Override]:
    """Hydra's parse of override strings.

    Raises:
        ValueError: an override that Hydra's grammar rejects, naming it.
    """
    parser = OverridesParser.create()
    parsed = []
    for text in overrides:
        try:
            parsed.extend(parser.parse_overrides([str(text)]))
        except Exception as exc:  # Hydra's OverrideParseException, among others
            raise ValueError(f"override {text!r} is not in Hydra's override grammar: {exc}") from exc
    return parsed


def override_key(override: Override) -> str:
    """The config path (or group, with ``@package``) an override sets: ``+a.b=1`` -> ``a.b``."""
    return override.key_or_group + (f"@{override.package}" if override.package else "")


def last_per_key(overrides: Sequence[str]) -> list[str]:
    """``overrides`` with every key kept once, at its last occurrence (the value Hydra applies)."""
    keys = [override_key(o) for o in parse_overrides(overrides)]
    last = {key: i for i, key in enumerate(keys)}
    return [str(text) for i, text in enumerate(overrides) if last[keys[i]] == i]


def rerun_overrides(trial_overrides: Sequence[str]) -> list[str]:
    """A trial's train overrides for its rerun: without ``eval.folds``, ``seed``, ``run_dir`` and
    ``hydra.*``, each key once (its last value)."""
    kept = [text for text, o in zip(trial_overrides, parse_overrides(trial_overrides))
            if override_key(o) not in NOT_INHERITED and not override_key(o).startswith("hydra.")]
    return last_per_key(kept)


def rerun_sweep_dir(study_dir: Path, study_name: str, trial: int, seeds: Sequence[int]) -> Path:
    """``<output_dir>/<study>_rerun/trial_<n>_seeds_<0-1-2>``: beside the study folder (so that
    ``graphrecall.report <study folder>`` tables the trials alone), one folder per trial and seeds."""
    return Path(study_dir).resolve().parent / f"{study_name}_rerun" / f"trial_{trial}_seeds_{'-'.join(map(str, seeds))}"


def launcher(cwd: Path) -> list[str]:
    """``[python, train.py]`` as they run from ``cwd``: this interpreter (relative when it lies below
    ``cwd``, e.g. ``.venv/bin/python``, else absolute) and the repository's train.py."""
    cwd = Path(cwd).resolve()
    exe = Path(sys.executable)
    python = os.path.relpath(exe, cwd) if exe.is_relative_to(cwd) else str(exe)
    script = ROOT / "train.py"
    return [python, os.path.relpath(script, cwd) if script.is_relative_to(cwd) else str(script)]


def rerun_argv(overrides: Sequence[str], seeds: Sequence[int], sweep_dir: Path, cwd: Path) -> list[str]:
    """The rerun as an argument list: ``python train.py -m <overrides> seed=0,1,2 hydra.sweep.dir=...``."""
    if not seeds:
        raise ValueError("the rerun needs at least one seed")
    return [*launcher(cwd), "-m", *overrides, f"seed={','.join(str(int(s)) for s in seeds)}",
            f"hydra.sweep.dir={Path(sweep_dir).resolve()}"]


def rerun_command(argv: Sequence[str], cwd: Path) -> str:
    """``cd <cwd> && <argv>``, shell-quoted: relative paths of the overrides (``data_dir``) resolve
    where the study ran."""
    return f"cd {shlex.quote(str(Path(cwd).resolve()))} && {shlex.join(argv)}"


def rerun_plan(record: dict[str, Any], study_name: str, study_dir: Path, seeds: Sequence[int],
               cwd: Path, sweep_dir: Path | None = None) -> dict[str, Any]:
    """``{"seeds", "sweep_dir", "cwd", "argv", "command"}`` for one trial record of best.json (its
    ``number`` and ``overrides``).

    Raises:
        ValueError: a record without the trial's overrides.
    """
    if not record.get("overrides"):
        raise ValueError(f"trial {record.get('number')} of study '{study_name}' has no recorded overrides "
                         "(best.json 'overrides'): cannot rebuild its setting")
    seeds = [int(s) for s in seeds]
    sweep = Path(sweep_dir) if sweep_dir else rerun_sweep_dir(study_dir, study_name, int(record["number"]), seeds)
    argv = rerun_argv(rerun_overrides(record["overrides"]), seeds, sweep, cwd)
    return {"seeds": seeds, "sweep_dir": str(sweep.resolve()), "cwd": str(Path(cwd).resolve()), "argv": argv,
            "command": rerun_command(argv, cwd)}


# ---- best.json
def best_json_path(path: str | Path) -> Path:
    """``path`` itself (a best.json) or ``<path>/best.json`` (a study folder).

    Raises:
        FileNotFoundError: neither exists.
    """
    path = Path(path)
    found = path / "best.json" if path.is_dir() else path
    if not found.is_file():
        raise FileNotFoundError(f"{path}: expected a study folder holding best.json (graphrecall.search writes "
                                "<output_dir>/<study>/best.json) or the best.json file itself")
    return found


def chosen_record(best: dict[str, Any], source: Path, trial: int | None = None) -> dict[str, Any]:
    """The best trial's record of a best.json (single objective), or trial ``trial`` of its Pareto front.

    Raises:
        ValueError: no complete trial, or a Pareto front without ``trial`` / without that trial.
    """
    if "best" in best:
        record = best["best"]
        if record is None:
            raise ValueError(f"{source}: the study has no complete trial yet (best is null)")
        if trial is not None and int(trial) != int(record["number"]):
            raise ValueError(f"{source}: --trial {trial} is not the best trial ({record['number']})")
        return record
    front = best.get("best_trials")
    if not front:
        raise ValueError(f"{source}: no best trial (neither 'best' nor a Pareto front 'best_trials')")
    numbers = [int(r["number"]) for r in front]
    if trial is None:
        raise ValueError(f"{source}: a multi-objective study has a Pareto front of trials {numbers}: pick one with --trial")
    if int(trial) not in numbers:
        raise ValueError(f"{source}: trial {trial} is not on the Pareto front {numbers}")
    return front[numbers.index(int(trial))]


def plan_from_best_json(path: str | Path, seeds: Sequence[int] = DEFAULT_SEEDS, trial: int | None = None,
                        sweep_dir: Path | None = None) -> dict[str, Any]:
    """The rerun plan (:func:`rerun_plan`) of a study folder or best.json; the launch folder is the
    one the study recorded (``rerun.cwd``), else the current folder."""
    source = best_json_path(path)
    best = json.loads(source.read_text())
    record = chosen_record(best, source, trial)
    cwd = Path((record.get("rerun") or {}).get("cwd") or os.getcwd())
    return rerun_plan(record, str(best.get("study_name") or source.parent.name), source.parent, seeds, cwd, sweep_dir)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", help="a study folder (<output_dir>/<study>/) or its best.json")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS))
    parser.add_argument("--trial", type=int, default=None, help="a Pareto trial (multi-objective studies)")
    parser.add_argument("--sweep-dir", default=None, help="the rerun's hydra.sweep.dir (default beside the study)")
    parser.add_argument("--overrides", action="store_true", help="print the train overrides alone, one per line")
    args = parser.parse_args(argv)
    try:
        plan = plan_from_best_json(args.study, args.seeds, args.trial, args.sweep_dir)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.overrides:
        start, end = plan["argv"].index("-m") + 1, -2  # between "-m" and seed=..., hydra.sweep.dir=...
        print("\n".join(plan["argv"][start:end]))
    else:
        print(plan["command"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
