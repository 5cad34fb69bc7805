"""Benchmark: stage 1 (mean, GAT) and M2GRL end to end at growing catalogue sizes (issue 13, item 3).

Each (preset, model) pair is one ``train.py`` run in its own child process (so that its peak
resident memory is its own), one training epoch, evaluated on the validation fold with the full
pool build (every content's top-P neighbours) and every validation user served:

* ``data s``: generating (or reading the cached) synthetic world;
* ``epoch s`` and ``steps/s``: the training epoch (``val/fit/epoch_seconds``; steps from the
  Lightning CSV log of the run);
* ``fit s``: graph build + epoch + pool build (the model's whole ``fit``);
* ``pool+eval s``: ``fit s`` minus the epoch, plus the evaluation of all validation users
  (``val/eval_seconds``);
* ``peak GiB``: the child's peak resident memory (``ru_maxrss``).

Presets: ``small`` (2k contents, 100k clicks), ``medium`` (20k, 1M), ``large`` (100k, 10M). Every
run uses one torch thread per process unless ``--threads`` says otherwise. Nothing here is a
ratio against a reference: the table is the measurement (the README quotes it with the machine).

Usage::

    python benchmarks/train_scale.py                                  # small medium large x mean gat m2grl
    python benchmarks/train_scale.py --presets small --models mean --out scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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


def run_one(preset: str, model: str, work: Path, threads: int, extra: list[str]) -> dict:
    """One train.py run in a child process; its metrics, step count and peak memory."""
    run_dir = work / f"{preset}_{model}"
    cmd = [sys.executable, "train.py", "dataset=synthetic", f"dataset.loader.preset={preset}", *MODELS[model],
           "trainer.max_epochs=1", "trainer.early_stopping_patience=0", "eval.folds=[val]",
           "eval.bootstrap.num_resamples=20", "trainer.enable_progress_bar=false", f"data_dir={work / 'data'}",
           f"hydra.run.dir={run_dir}", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONPATH": str(ROOT / "src")}
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # max over finished children
    if proc.returncode != 0:
        return {"preset": preset, "model": model, "error": (proc.stdout + proc.stderr)[-2000:], "wall_s": wall}
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    steps = 0
    for csv in run_dir.glob("csv/**/metrics.csv"):
        lines = csv.read_text().splitlines()
        header = lines[0].split(",")
        if "step" in header:
            steps = max([int(float(r.split(",")[header.index("step")])) for r in lines[1:]
                         if r.split(",")[header.index("step")]] or [0])
    epoch = metrics.get("val/fit/epoch_seconds", float("nan"))
    fit = metrics.get("val/fit/fit_seconds", float("nan"))
    return {
        "preset": preset, "model": model, "wall_s": wall,
        "data_s": metrics.get("data/load_seconds"), "epoch_s": epoch, "steps": steps,
        "steps_per_s": steps / epoch if steps and epoch == epoch and epoch > 0 else None,
        "fit_s": fit, "pool_eval_s": fit - epoch + metrics.get("val/eval_seconds", 0.0),
        # ru_maxrss of RUSAGE_CHILDREN is the largest child so far: exact when sizes grow
        "peak_gib": peak_kib / 2**20 if peak_kib > before else None,
        "val_recall@50": metrics.get("val/recall@50"),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["small", "medium", "large"])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work-dir", default=None, help="keep the runs here (default: a temporary folder)")
    p.add_argument("--out", default=None, help="write the rows as JSON")
    p.add_argument("extra", nargs="*", help="train.py overrides added to every run")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work_dir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        rows = []
        print("| preset | model | data s | epoch s | steps/s | pool+eval s | peak GiB | val recall@50 |")
        print("|---|---|---|---|---|---|---|---|")
        for preset in args.presets:  # growing sizes: the children's running peak is each run's own
            for model in args.models:
                row = run_one(preset, model, work, args.threads, args.extra)
                rows.append(row)
                if "error" in row:
                    print(f"| {preset} | {model} | FAILED after {row['wall_s']:.0f} s: {row['error'][-300:]!r} |")
                    continue
                fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
                print(f"| {preset} | {model} | {fmt(row['data_s'], '.1f')} | {fmt(row['epoch_s'], '.1f')} | "
                      f"{fmt(row['steps_per_s'], '.2f')} | {fmt(row['pool_eval_s'], '.1f')} | "
                      f"{fmt(row['peak_gib'], '.2f')} | {fmt(row['val_recall@50'], '.4f')} |", flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps(rows, indent=2))
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
