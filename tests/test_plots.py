"""graphrecall.plots: popularity levels, the joint interest / conformity projection, figures, atomic saves."""

from __future__ import annotations

import numpy as np
import pytest

from graphrecall import plots


def _vectors(num_contents: int = 200, dim: int = 8, seed: int = 0):
    """Interest vectors around +4 e_0, conformity vectors around -4 e_0; popularity a long tail."""
    rng = np.random.default_rng(seed)
    interest = rng.normal(size=(num_contents, dim)) + 4 * np.eye(dim)[0]
    conformity = rng.normal(size=(num_contents, dim)) - 4 * np.eye(dim)[0]
    popularity = np.floor(rng.pareto(1.5, size=num_contents) * 10)
    return interest, conformity, popularity


def test_popularity_levels_are_hand_computed_terciles():
    pop = np.array([0, 0, 0, 1, 2, 3, 5, 8, 13, 100])
    levels, edges = plots.popularity_levels(pop, 3)
    # quantiles 1/3 and 2/3 of 10 sorted values sit exactly on positions 3 and 6: values 1 and 5
    assert edges.tolist() == [1.0, 5.0]
    assert levels.tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]  # (.., 1], (1, 5], (5, ..)
    assert plots._level_labels(edges) == ["low (≤ 1)", "medium (1, 5]", "high (> 5)"]
    with pytest.raises(ValueError, match="finite"):
        plots.popularity_levels(np.array([1.0, np.nan]))


def test_tsne_projection_fits_both_kinds_together():
    interest, conformity, popularity = _vectors()
    proj = plots.project_together(interest, conformity, popularity, num_points=120, method="tsne", seed=3)
    n = 120
    assert proj.coords.shape == (2 * n, 2) and np.isfinite(proj.coords).all()
    assert (proj.kinds[:n] == "interest").all() and (proj.kinds[n:] == "conformity").all()
    # a seeded sample without replacement, sorted, the same contents for both kinds
    assert len(np.unique(proj.contents)) == n and (np.diff(proj.contents) > 0).all()
    again = plots.project_together(interest, conformity, popularity, num_points=120, method="pca", seed=3)
    assert (again.contents == proj.contents).all()
    other = plots.project_together(interest, conformity, popularity, num_points=120, method="pca", seed=4)
    assert (other.contents != proj.contents).any()
    # levels: terciles over ALL contents (hand binning), repeated for both kinds
    edges = np.quantile(popularity, [1 / 3, 2 / 3])
    expected = np.array([0 if p <= edges[0] else 1 if p <= edges[1] else 2 for p in popularity[proj.contents]])
    assert (proj.levels[:n] == expected).all() and (proj.levels[n:] == expected).all()
    # one joint fit: the two well-separated clouds stay apart (nearest neighbour of the same kind)
    d = np.linalg.norm(proj.coords[:, None] - proj.coords[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    assert (proj.kinds[d.argmin(1)] == proj.kinds).mean() > 0.95


def test_small_catalogue_uses_every_content_and_pca_is_exact():
    from sklearn.decomposition import PCA

    interest, conformity, popularity = _vectors(num_contents=30)
    proj = plots.project_together(interest, conformity, popularity, num_points=3000, method="pca")
    assert proj.contents.tolist() == list(range(30))
    expected = PCA(n_components=2, random_state=0).fit_transform(np.vstack([interest, conformity]))
    assert np.allclose(proj.coords, expected)


def test_figure_plots_the_projection_by_kind_and_level():
    interest, conformity, popularity = _vectors()
    fig = plots.interest_conformity_projection(interest, conformity, popularity, num_points=80, method="pca", seed=1)
    proj = plots.project_together(interest, conformity, popularity, num_points=80, method="pca", seed=1)
    ax = fig.axes[0]
    drawn = np.vstack([c.get_offsets() for c in ax.collections])
    assert len(drawn) == 160
    # every point of each (kind, level) group is drawn, in its own scatter
    for c in ax.collections:
        kind, level_label = c.get_label().split(", ", 1)
        q = proj.level_labels.index(level_label)
        mask = (proj.kinds == kind) & (proj.levels == q)
        assert np.allclose(c.get_offsets(), proj.coords[mask])
    legend_texts = {t.get_text() for leg in [ax.get_legend(), *ax.artists] for t in leg.get_texts()}
    assert {"interest", "conformity", *proj.level_labels} <= legend_texts


def test_projection_rejects_bad_inputs():
    interest, conformity, popularity = _vectors(num_contents=20)
    with pytest.raises(ValueError, match="one shape"):
        plots.project_together(interest, conformity[:, :4], popularity)
    with pytest.raises(ValueError, match=r"shape \[C\]"):
        plots.project_together(interest, conformity, popularity[:5])
    with pytest.raises(ValueError, match="tsne' or 'pca"):
        plots.project_together(interest, conformity, popularity, method="umap")
    bad = interest.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        plots.project_together(bad, conformity, popularity)


def test_save_figure_is_atomic_and_needs_a_suffix(tmp_path):
    interest, conformity, popularity = _vectors(num_contents=20)
    fig = plots.interest_conformity_projection(interest, conformity, popularity, method="pca")
    path = plots.save_figure(fig, tmp_path / "new" / "figure.png")
    assert path.read_bytes()[:4] == b"\x89PNG" and [p.name for p in path.parent.iterdir()] == ["figure.png"]
    assert plots.save_figure(fig, tmp_path / "figure.pdf").read_bytes()[:4] == b"%PDF"
    with pytest.raises(ValueError, match="suffix"):
        plots.save_figure(fig, tmp_path / "figure")
