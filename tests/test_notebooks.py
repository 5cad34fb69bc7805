"""The notebooks in notebooks/: every .ipynb is paired with its .py (jupytext percent) and in sync, and
every notebook runs top to bottom on tiny data (parameters through environment variables)."""

from __future__ import annotations

import re

import os

import jupytext
import nbformat
from jupytext.compare import compare_notebooks
from nbclient import NotebookClient

from tests.conftest import ROOT
from tests.test_report import make_sweep

NB_DIR = ROOT / "notebooks"
STEMS = sorted(p.stem for p in NB_DIR.glob("*.py"))


def test_every_notebook_is_paired_and_in_sync():
    assert STEMS, "no notebook in notebooks/"
    assert sorted(p.stem for p in NB_DIR.glob("*.ipynb")) == STEMS
    for stem in STEMS:
        ipynb = nbformat.read(NB_DIR / f"{stem}.ipynb", as_version=4)
        text = jupytext.read(NB_DIR / f"{stem}.py")
        assert ipynb.metadata["jupytext"]["formats"] == "ipynb,py:percent", stem
        compare_notebooks(ipynb, text, fmt="py:percent")  # raises on any difference in cells or sources
        assert [(c.cell_type, c.source) for c in ipynb.cells] == [(c.cell_type, c.source) for c in text.cells]
        code = [c for c in ipynb.cells if c.cell_type == "code"]
        assert code and not any(c.outputs for c in code), f"{stem}.ipynb is committed with outputs"


def _run(stem: str, env: dict[str, str], monkeypatch) -> nbformat.NotebookNode:
    """Execute ``notebooks/<stem>.ipynb`` in a fresh kernel started from notebooks/ with ``env``."""
    for key in [k for k in os.environ if k.startswith("WANDB_")]:  # not this process's W&B service
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(NB_DIR / f"{stem}.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NB_DIR)}}).execute()
    return nb


def _text(nb: nbformat.NotebookNode) -> str:
    """Everything the notebook printed or displayed as text."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            data = out.get("data", {})
            parts.extend(str(data[k]) for k in ("text/plain", "text/markdown") if k in data)
    return "\n".join(parts)


def _images(nb: nbformat.NotebookNode) -> int:
    return sum("image/png" in out.get("data", {}) for c in nb.cells for out in c.get("outputs", []))


def test_01_data_exploration_runs(tmp_path, monkeypatch):
    nb = _run("01_data_exploration", {"GRAPHRECALL_NB_PRESET": "tiny"}, monkeypatch)
    text = _text(nb)
    assert "200 contents; the top 20% (40) receive" in text  # tiny: 200 contents
    assert "groups of age_band x gender x traffic_source" in text
    assert _images(nb) == 3


def test_02_embedding_visualisation_trains_dice_and_draws_the_figure(tmp_path, monkeypatch):
    env = {"GRAPHRECALL_NB_PRESET": "tiny", "GRAPHRECALL_NB_EPOCHS": "1", "GRAPHRECALL_NB_POINTS": "100",
           "GRAPHRECALL_NB_OUT": str(tmp_path)}
    nb = _run("02_embedding_visualisation", env, monkeypatch)
    assert (tmp_path / "dice_tiny" / "metrics.json").exists()
    assert (tmp_path / "interest_conformity.png").read_bytes()[:4] == b"\x89PNG"
    text = _text(nb)
    assert "200 contents, 64 + 64 dimensions" in text and "of 200 points" in text  # 100 sampled x 2 kinds
    assert _images(nb) == 1


def test_03_ablation_results_reads_a_sweep(tmp_path, monkeypatch):
    sweep = make_sweep(tmp_path / "sweep")
    env = {"GRAPHRECALL_NB_SWEEP": str(sweep), "GRAPHRECALL_NB_OUT": str(tmp_path / "out")}
    nb = _run("03_ablation_results", env, monkeypatch)
    text = _text(nb)
    assert "6 finished runs" in text
    # the report's table of the fixture: labels from the runs' resolved choices (dataset always shown)
    assert re.search(r"\| model=sage aggregator=mean [^|]*dataset=synthetic \| 3 \| 0\.3100 ± 0\.0100 \|", text), text
    assert (tmp_path / "out" / "ablation_recall_at_50.png").exists() and _images(nb) == 1
