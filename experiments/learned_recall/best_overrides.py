"""Print a study's best.json as train.py overrides: the study's fixed overrides (minus the
validation-only ``eval.folds``) then its best parameters, one per line.

Usage: python experiments/learned_recall/best_overrides.py <output_dir>/<study>/best.json <study config>
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from omegaconf import OmegaConf


def best_overrides(best_json: Path, study_yaml: Path) -> list[str]:
    best = json.loads(best_json.read_text())["best"]["params"]
    fixed = [o for o in OmegaConf.load(study_yaml).overrides if not str(o).startswith("eval.folds=")]
    return [str(o) for o in fixed] + [f"{k}={v}" for k, v in best.items()]


if __name__ == "__main__":
    print("\n".join(best_overrides(Path(sys.argv[1]), Path(sys.argv[2]))))
