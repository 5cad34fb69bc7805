"""Figures for the write-ups: ablation bars of a sweep and the DICE interest / conformity projection.

Every function returns a ``matplotlib.figure.Figure`` drawn on an Agg canvas without touching
pyplot's global state, so they work in scripts, tests and notebooks alike (in a notebook, the last
expression or ``display(fig)`` shows it). :func:`save_figure` writes a figure atomically.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

KINDS = ("interest", "conformity")
MARKERS = {"interest": "o", "conformity": "^"}
LEVEL_NAMES = {2: ("low", "high"), 3: ("low", "medium", "high")}


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)  # Agg, independent of the interactive backend pyplot may have chosen
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 150) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix: .png, .pdf, .svg) through a temporary file
    and a rename, so an interrupted write never leaves a truncated image. Creates missing folders."""
    path = Path(path)
    suffix = path.suffix.lstrip(".").lower()
    if not suffix:
        raise ValueError(f"cannot tell the image format of '{path}': give a suffix such as .png or .pdf")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fig.savefig(tmp, format=suffix, dpi=dpi)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# ---- ablation bars
def ablation_bars(table: pd.DataFrame, metric: str, title: str | None = None, ylabel: str | None = None) -> Figure:
    """Bar chart of one metric per configuration: mean over seeds with ± one standard deviation.

    Args:
        table: the long table of :func:`graphrecall.report.aggregate` (columns ``run, metric, mean,
            std, n, ci_low, ci_high``), one row per (configuration, metric).
        metric: a value of the ``metric`` column, e.g. ``recall@50`` or ``val/recall@50``.
        title, ylabel: defaults name the metric.

    Returns:
        One bar per configuration in table order. Error bars: the standard deviation over seeds when a
        configuration has several; for a single run the bootstrap interval over users when the table
        has one (else none). ``n=`` above each bar is the number of runs averaged.
    """
    missing = {"run", "metric", "mean", "std", "n"} - set(table.columns)
    if missing:
        raise ValueError(f"ablation_bars needs the long table of report.aggregate; missing columns {sorted(missing)}")
    rows = table[(table["metric"] == metric) & (table["n"] > 0)]
    if rows.empty:
        known = sorted(table.loc[table["n"] > 0, "metric"].unique())
        raise KeyError(f"no run has metric '{metric}'; metrics with values: {known}")
    mean = rows["mean"].to_numpy(float)
    lower, upper = np.zeros(len(rows)), np.zeros(len(rows))
    for j, r in enumerate(rows.itertuples(index=False)):
        if r.n > 1 and np.isfinite(r.std):
            lower[j] = upper[j] = r.std
        elif "ci_low" in rows.columns and np.isfinite(getattr(r, "ci_low", np.nan)):
            lower[j], upper[j] = r.mean - r.ci_low, r.ci_high - r.mean
    # horizontal bars, first configuration on top: Hydra-override labels are long
    labels = rows["run"].astype(str).tolist()
    width = 4.5 + 0.07 * max(len(label) for label in labels)
    fig = _figure(min(width, 14.0), 1.0 + 0.45 * len(rows))
    ax = fig.add_subplot()
    y = np.arange(len(rows))
    ax.barh(y, mean, xerr=np.vstack([lower, upper]), capsize=4, color="tab:blue", alpha=0.85)
    for yi, right, n in zip(y, mean + upper, rows["n"].to_numpy()):
        ax.annotate(f"n={int(n)}", (right, yi), textcoords="offset points", xytext=(4, 0), va="center", fontsize=8)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel(ylabel or metric)
    fig.suptitle(title or f"{metric}: mean ± std over seeds", fontsize=10)  # centred on the figure, not the axes
    ax.set_xlim(left=0)
    ax.margins(x=0.2)  # room for the n= labels
    return fig


# ---- interest vs conformity
@dataclass
class Projection:
    """2-D projection of interest and conformity vectors fitted together.

    Attributes:
        coords: [2n, 2] the n interest vectors first, then the n conformity vectors (same content order).
        kinds: [2n] ``"interest"`` or ``"conformity"``.
        levels: [2n] popularity level of the row's content, 0 (least popular) .. num_levels - 1.
        contents: [n] the sampled content indices (sorted).
        level_labels: one legend label per level, with its popularity range.
    """

    coords: np.ndarray
    kinds: np.ndarray
    levels: np.ndarray
    contents: np.ndarray
    level_labels: list[str]


def popularity_levels(popularity: np.ndarray, num_levels: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Quantile bins of popularity: ``level = #{edges < pop}`` with edges at the 1/L, ..., (L-1)/L quantiles.

    Intervals are closed on the right (``pop <= edge_1`` is level 0), so the many tied counts at the
    bottom of a long tail share the lowest level.

    Returns:
        ([C] int levels, [L - 1] edges).
    """
    pop = np.asarray(popularity, dtype=float)
    if pop.ndim != 1 or not np.isfinite(pop).all():
        raise ValueError(f"popularity must be a finite 1-D array, got shape {pop.shape}")
    if num_levels < 1:
        raise ValueError(f"num_levels must be >= 1, got {num_levels}")
    edges = np.quantile(pop, np.arange(1, num_levels) / num_levels)
    return np.searchsorted(edges, pop, side="left").astype(np.int64), edges


def _level_labels(edges: np.ndarray) -> list[str]:
    names = LEVEL_NAMES.get(len(edges) + 1, tuple(f"Q{q + 1}" for q in range(len(edges) + 1)))
    fmt = lambda v: f"{v:.3g}"  # noqa: E731
    if len(edges) == 0:
        return ["all"]
    labels = [f"{names[0]} (≤ {fmt(edges[0])})"]
    labels += [f"{names[q]} ({fmt(edges[q - 1])}, {fmt(edges[q])}]" for q in range(1, len(edges))]
    labels.append(f"{names[-1]} (> {fmt(edges[-1])})")
    return labels


def project_together(
    interest: np.ndarray,
    conformity: np.ndarray,
    popularity: np.ndarray,
    num_points: int = 3000,
    method: Literal["tsne", "pca"] = "tsne",
    seed: int = 0,
    num_levels: int = 3,
    threads: int | None = 1,
) -> Projection:
    """Sample up to ``num_points`` contents and project their interest and conformity vectors with ONE fit.

    Both kinds go through the same t-SNE (or PCA) fit on the stacked ``[2n, d]`` array, so distances
    between an interest and a conformity point are comparable, as in the DICE article's figure.

    Args:
        interest, conformity: [C, d] content vectors of the two branches (same C and d).
        popularity: [C] popularity of each content (e.g. distinct users in the training window);
            levels are its quantile bins over all C contents (:func:`popularity_levels`).
        num_points: contents drawn without replacement (all when C <= num_points).
        method: ``tsne`` (scikit-learn ``TSNE``, PCA init, perplexity ``min(30, (2n - 1) / 3)``) or ``pca``.
        seed: sampling and t-SNE seed.
        num_levels: popularity bins.
        threads: OpenMP threads of the t-SNE fit (None: the library default, every core). One by
            default: on small shared machines the Barnes-Hut gradient's thread barriers cost more than
            they gain (400 points on a busy 2-core machine: 1.9 s with one thread, 8.8 s with two).
    """
    interest, conformity = np.asarray(interest), np.asarray(conformity)
    popularity = np.asarray(popularity)
    if interest.ndim != 2 or interest.shape != conformity.shape:
        raise ValueError(f"interest and conformity must be [C, d] arrays of one shape, got {interest.shape} "
                         f"and {conformity.shape}")
    if popularity.shape != (interest.shape[0],):
        raise ValueError(f"popularity must have shape [C] = ({interest.shape[0]},), got {popularity.shape}")
    if not (np.isfinite(interest).all() and np.isfinite(conformity).all()):
        raise ValueError("interest / conformity vectors contain NaN or inf")
    if method not in ("tsne", "pca"):
        raise ValueError(f"method must be 'tsne' or 'pca', got '{method}'")
    num_contents = interest.shape[0]
    if num_contents < 2 or num_points < 2:
        raise ValueError(f"need at least 2 contents to project, got C={num_contents}, num_points={num_points}")
    levels_all, edges = popularity_levels(popularity, num_levels)
    rng = np.random.default_rng(seed)
    contents = (np.sort(rng.choice(num_contents, size=num_points, replace=False)) if num_contents > num_points
                else np.arange(num_contents))
    n = len(contents)
    stacked = np.vstack([interest[contents], conformity[contents]]).astype(np.float64)
    if method == "tsne":
        from sklearn.manifold import TSNE
        from threadpoolctl import threadpool_limits

        perplexity = float(min(30.0, (2 * n - 1) / 3))
        with threadpool_limits(limits=threads):
            coords = TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
                          random_state=seed).fit_transform(stacked)
    else:
        from sklearn.decomposition import PCA

        coords = PCA(n_components=2, random_state=seed).fit_transform(stacked)
    return Projection(
        coords=np.asarray(coords, dtype=np.float64),
        kinds=np.repeat(np.array(KINDS), n),
        levels=np.concatenate([levels_all[contents], levels_all[contents]]),
        contents=contents,
        level_labels=_level_labels(edges),
    )


def projection_figure(projection: Projection, title: str | None = None) -> Figure:
    """Scatter of a :class:`Projection`: marker by kind, colour by popularity level, two legends."""
    fig = _figure(6.4, 5.6)
    ax = fig.add_subplot()
    num_levels = len(projection.level_labels)
    colours = [f"C{q}" for q in range(num_levels)] if num_levels <= 10 else None
    for kind in KINDS:
        for q in range(num_levels):
            mask = (projection.kinds == kind) & (projection.levels == q)
            if mask.any():
                ax.scatter(projection.coords[mask, 0], projection.coords[mask, 1], s=9, alpha=0.6,
                           marker=MARKERS[kind], color=colours[q] if colours else None,
                           label=f"{kind}, {projection.level_labels[q]}")
    kind_handles = [Line2D([], [], ls="", marker=MARKERS[k], color="0.3", label=k) for k in KINDS]
    level_handles = [Line2D([], [], ls="", marker="s", color=colours[q] if colours else "0.5",
                            label=projection.level_labels[q]) for q in range(num_levels)]
    first = ax.legend(handles=kind_handles, title="vector", loc="upper left", fontsize=8)
    ax.add_artist(first)
    ax.legend(handles=level_handles, title="popularity", loc="lower right", fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    n = len(projection.contents)
    ax.set_title(title or f"Interest vs conformity vectors of {n} contents, projected together")
    return fig


def interest_conformity_projection(
    interest: np.ndarray,
    conformity: np.ndarray,
    popularity: np.ndarray,
    num_points: int = 3000,
    method: Literal["tsne", "pca"] = "tsne",
    seed: int = 0,
) -> Figure:
    """The DICE article's figure: interest and conformity content vectors in one 2-D map.

    Samples up to ``num_points`` contents (seeded), fits one t-SNE (or PCA) on their stacked interest
    and conformity vectors (:func:`project_together`), and draws interest points as circles and
    conformity points as triangles, coloured by popularity tercile (legend gives the ranges). If the
    disentanglement works, the two kinds form separate clouds and conformity points order by
    popularity while interest points do not.

    Args:
        interest, conformity: [C, d] content vectors; popularity: [C].
        num_points, method, seed: see :func:`project_together`.
    """
    proj = project_together(interest, conformity, popularity, num_points=num_points, method=method, seed=seed)
    label = "t-SNE" if method == "tsne" else "PCA"
    return projection_figure(proj, f"Interest vs conformity ({label}, {len(proj.contents)} contents)")
