"""Benchmark: stage 1 (mean, GAT) and M2GRL end to end at growing catalogue sizes (issue 13, item 3).

Each (preset, model) pair is one ``train.py`` run in its own child process (so that its peak
resident memory is its own), one training epoch, evaluated on the validation fold with the full
pool build (every content's top-P neighbours) and every validation user served:

* ``data s``: generating (or reading the cached) synthetic world;
* ``steps`` (done of a full epoch's), ``steps/s``: the training steps alone
  (``train/steps_seconds``: epoch start to the end of its last step, without validation);
* ``epoch s``: the steps' seconds when the epoch ran in full; with ``--limit-batches N`` (only N
  steps), the full epoch's steps divided by the measured steps/s, marked ``(projected)``;
* ``graph+pool s``: the model's ``fit`` minus its trainer (graph build, features, the pool build);
* ``pool+eval s``: everything of ``fit`` but the steps (graph, pool, the in-fit validation) plus the
  final evaluation of every validation user (``val/eval_seconds``); ``eval users`` counts them;
* ``peak GiB``: the child's own peak resident memory (``ru_maxrss`` from ``os.wait4``).

Presets: ``small`` (2k contents, 100k clicks), ``medium`` (20k, 1M), ``large`` (100k, 10M). Every
run uses one torch thread per process unless ``--threads`` says otherwise. Nothing here is a
ratio against a reference: the table is the measurement (the README quotes it with the machine).

Usage::

    python benchmarks/train_scale.py                                  # small medium large x mean gat m2grl
    python benchmarks/train_scale.py --presets small --models mean --out scale.json
    python benchmarks/train_scale.py --presets large --models gat m2grl --limit-batches 30
"""

from __future__ import annotations

import argparse
import csv as _csv
import math
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = {
    "mean": ["model=sage", "aggregator=mean"],
    "gat": ["model=sage", "aggregator=gat"],
    "m2grl": ["model=m2grl"],
}


def run_one(preset: str, model: str, work: Path, threads: int, extra: list[str], limit_batches: int | None = None) -> dict:
    """One train.py run in a child process; its metrics, step count and peak memory."""
    run_dir = work / f"{preset}_{model}"
    cmd = [sys.executable, "train.py", "dataset=synthetic", f"dataset.loader.preset={preset}", *MODELS[model],
           "trainer.max_epochs=1", "trainer.early_stopping_patience=0", "eval.folds=[val]",
           "eval.bootstrap.num_resamples=20", "trainer.enable_progress_bar=false", f"data_dir={work / 'data'}",
           f"hydra.run.dir={run_dir}", *extra]
    if limit_batches:
        cmd.append(f"+trainer.limit_train_batches={int(limit_batches)}")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONPATH": str(ROOT / "src")}
    start = time.perf_counter()
    with open(run_dir.with_suffix(".log"), "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage: its peak, not a running max
    wall = time.perf_counter() - start
    returncode = os.waitstatus_to_exitcode(status)
    if returncode != 0:
        reason = (f"killed by signal {-returncode}" + (" (SIGKILL: out of memory?)" if returncode == -9 else "")
                  if returncode < 0 else f"exit status {returncode}")
        return {"preset": preset, "model": model, "wall_s": wall, "peak_gib": usage.ru_maxrss / 2**20,
                "error": f"{reason}; log tail: " + run_dir.with_suffix(".log").read_text()[-1500:]}
    record = json.loads((run_dir / "metrics.json").read_text())
    metrics = record["metrics"]
    steps, steps_seconds = 0, float("nan")
    for csv in run_dir.glob("csv/**/metrics.csv"):
        rows = list(_csv.DictReader(csv.open()))
        # the epoch-end rows are logged at step = global_step - 1 (Lightning): steps = that + 1
        steps = max([int(float(r["step"])) + 1 for r in rows if r.get("train/steps_seconds")] or [0])
        seconds = [float(r["train/steps_seconds"]) for r in rows if r.get("train/steps_seconds")]
        steps_seconds = sum(seconds) if seconds else steps_seconds
    config = json.loads((run_dir / "config_resolved.json").read_text())
    batch_size = int(config["model"]["optim"]["batch_size"])
    epoch_steps = math.ceil(metrics.get("val/fit/positives", 0) / batch_size)  # a full epoch's steps
    steps_per_s = steps / steps_seconds if steps and steps_seconds > 0 else None
    fit = metrics.get("val/fit/fit_seconds", float("nan"))
    train = metrics.get("val/fit/train_seconds", float("nan"))
    return {
        "preset": preset, "model": model, "wall_s": wall, "limit_batches": limit_batches,
        "data_s": metrics.get("data/load_seconds"), "steps": steps, "steps_s": steps_seconds,
        "steps_per_s": steps_per_s, "epoch_steps": epoch_steps,
        # measured when the epoch ran in full, else the full epoch's steps at the measured rate
        "epoch_s": steps_seconds if steps >= epoch_steps else (epoch_steps / steps_per_s if steps_per_s else None),
        "epoch_projected": steps < epoch_steps,
        # graph build + pool build + in-fit validation + the final evaluation of every validation user
        "pool_eval_s": fit - steps_seconds + metrics.get("val/eval_seconds", 0.0),
        "graph_pool_s": fit - train,
        "eval_users": record["details"]["folds"]["val"]["target_users"],
        "peak_gib": usage.ru_maxrss / 2**20,  # ru_maxrss is in KiB on Linux
        "val_recall@50": metrics.get("val/recall@50"),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["small", "medium", "large"])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work-dir", default=None, help="keep the runs here (default: a temporary folder)")
    p.add_argument("--out", default=None, help="write the rows as JSON")
    p.add_argument("--limit-batches", type=int, default=None,
                   help="train only this many steps and project the epoch time from the measured steps/s")
    p.add_argument("extra", nargs="*", help="train.py overrides added to every run")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work_dir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        rows = []
        print("| preset | model | data s | steps | steps/s | epoch s | graph+pool s | eval users | pool+eval s "
              "| peak GiB | val recall@50 |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for preset in args.presets:
            for model in args.models:
                row = run_one(preset, model, work, args.threads, args.extra, args.limit_batches)
                rows.append(row)
                if "error" in row:
                    print(f"| {preset} | {model} | FAILED after {row['wall_s']:.0f} s, peak {row['peak_gib']:.2f} GiB: "
                          f"{row['error'][:80]} |", flush=True)
                    continue
                fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
                epoch = fmt(row["epoch_s"], ".1f") + (" (projected)" if row["epoch_projected"] else "")
                print(f"| {preset} | {model} | {fmt(row['data_s'], '.1f')} | {row['steps']} of {row['epoch_steps']} | "
                      f"{fmt(row['steps_per_s'], '.2f')} | {epoch} | {fmt(row['graph_pool_s'], '.1f')} | "
                      f"{row['eval_users']} | {fmt(row['pool_eval_s'], '.1f')} | {fmt(row['peak_gib'], '.2f')} | "
                      f"{fmt(row['val_recall@50'], '.4f')} |", flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps(rows, indent=2))
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
