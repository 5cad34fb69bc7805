"""Check the stage-3 runs against issue 11's done-when, from the runs' own logs.

For every run below the given folders (a folder with ``metrics.json``), reads its Lightning CSV log
and ``metrics.json`` and prints one row: the run's overrides, the largest
``train/false_negative_share`` logged at any step (must be 0), the logged steps, the epochs run,
``val/fit/stopped_on_patience`` (1: stopped on patience, not on the epoch cap) and the share of
draws that fell back to the pool or had no valid candidate. The last line counts the runs that
break either rule; the exit status is 1 if any does.

Usage: PYTHONPATH=src python experiments/stage3/check_runs.py outputs/experiments/stage3 [more folders]
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import yaml


def run_overrides(run_dir: Path) -> tuple[list[str], int | None]:
    """(the run's command-line overrides without the seed, the seed) from Hydra's ``.hydra/overrides.yaml``."""
    path = run_dir / ".hydra" / "overrides.yaml"
    seed, kept = None, []
    for o in (yaml.safe_load(path.read_text()) if path.exists() else None) or []:
        key, _, value = o.partition("=")
        if key == "seed" or key.endswith(".seed"):  # run seed or data seed: a repetition, not a config
            seed = int(value)
        elif not o.startswith(("hydra.", "experiment=")):
            kept.append(o)
    return kept, seed


def check_run(run: Path) -> dict:
    """One run's false-negative share (max over logged steps), epochs and stop reason."""
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    rows = []
    for log in sorted(run.glob("csv/**/metrics.csv")):
        with log.open() as handle:
            rows.extend(csv.DictReader(handle))

    def column(name: str) -> list[float]:
        return [float(r[name]) for r in rows if r.get(name)]

    false_negative = column("train/false_negative_share")
    overrides, seed = run_overrides(run)
    return {
        "run": " ".join(overrides) + (f" seed={seed}" if seed is not None else ""),
        "logged_steps": len(false_negative),
        "max_false_negative_share": max(false_negative) if false_negative else None,
        "max_fallback_share": max(column("train/fallback_share"), default=None),
        "max_no_candidate_share": max(column("train/no_candidate_share"), default=None),
        "epochs": metrics.get("val/fit/epochs"),
        "stopped_on_patience": metrics.get("val/fit/stopped_on_patience"),
    }


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    runs = sorted({p.parent for root in argv for p in Path(root).rglob("metrics.json")})
    if not runs:
        raise FileNotFoundError(f"no run with a metrics.json below {argv}")
    print("| run | logged steps | max false-negative share | max fallback share | max no-candidate share "
          "| epochs | stopped on patience |")
    print("|---|---|---|---|---|---|---|")
    bad = 0
    for run in runs:
        r = check_run(run)
        broken = (r["max_false_negative_share"] is None or r["max_false_negative_share"] > 0
                  or r["stopped_on_patience"] != 1)
        bad += broken
        fmt = lambda v: "-" if v is None else f"{v:g}"  # noqa: E731
        print(f"| {r['run']}{' **(fails)**' if broken else ''} | {r['logged_steps']} | "
              f"{fmt(r['max_false_negative_share'])} | {fmt(r['max_fallback_share'])} | "
              f"{fmt(r['max_no_candidate_share'])} | {fmt(r['epochs'])} | {fmt(r['stopped_on_patience'])} |")
    print(f"\n{len(runs)} runs; {bad} with a false-negative share above 0, no logged share, or not stopped on patience")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
