"""Content slices: recall restricted to the targets on rare or new contents, and the share of the
slots a list spends on new contents.

The article's case for side information is the contents that co-click cannot place: new ones (no
click in the training window) and rare ones. A content's slice is fixed by its number of clicks in
the fold's training window (``click_bins``, default lower edges ``0, 1, 3, 10``: slices ``0``,
``1-2``, ``3-9``, ``10+``). Recall within a slice (:func:`slice_recall_at_k`) is

.. math::
    \\mathrm{Recall@k}_S(u) = \\frac{|\\text{top-k}(u) \\cap T_u \\cap S|}{|T_u \\cap S|},

for the user's targets ``T_u`` and the slice's contents ``S``, ``NaN`` when ``T_u \\cap S`` is
empty; the slice's mean is over the users with at least one target in it (``np.nanmean``). The
lists are the ordinary top-k lists: a slot spent on a content outside ``S`` is not a hit of ``S``.

Same ``recs`` / ``targets`` conventions as :mod:`graphrecall.metrics.ranking`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from graphrecall.metrics.ranking import _as_targets, recall_at_k

__all__ = ["DEFAULT_CLICK_BINS", "check_click_bins", "click_bin_names", "click_bins", "restrict_targets",
           "slice_recall_at_k"]

DEFAULT_CLICK_BINS = (0, 1, 3, 10)


def check_click_bins(edges: Sequence[int], key: str = "eval.content_bins") -> tuple[int, ...]:
    """Validate lower bin edges (integers, first 0, strictly increasing); the error names ``key``.

    Args:
        edges (Sequence[int]): Lower click-count edges, e.g. ``[0, 1, 3, 10]``.
        key (str): The config key the edges came from, named in the error.

    Returns:
        tuple[int, ...]: The edges as ints.
    """
    try:
        edges = list(edges) if edges is not None else []
    except TypeError:
        raise ValueError(f"{key}={edges!r}: expected a list of integers (lower click-count edges, "
                         "e.g. [0, 1, 3, 10])") from None
    if not edges or any(isinstance(e, bool) or not isinstance(e, (int, np.integer)) for e in edges):
        raise ValueError(f"{key}={edges!r}: expected a non-empty list of integers (lower click-count edges, "
                         "e.g. [0, 1, 3, 10])")
    if edges[0] != 0 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"{key}={edges!r}: expected strictly increasing integers starting at 0 (e.g. [0, 1, 3, 10])")
    return tuple(int(e) for e in edges)


def click_bin_names(edges: Sequence[int]) -> list[str]:
    """Slice names of the bins: ``[0, 1, 3, 10]`` -> ``clicks_0, clicks_1-2, clicks_3-9, clicks_10+``."""
    edges = check_click_bins(edges)
    names = []
    for lo, hi in zip(edges, [*edges[1:], None]):
        if hi is None:
            names.append(f"clicks_{lo}+")
        elif hi - lo == 1:
            names.append(f"clicks_{lo}")
        else:
            names.append(f"clicks_{lo}-{hi - 1}")
    return names


def click_bins(clicks_per_item: np.ndarray, edges: Sequence[int] = DEFAULT_CLICK_BINS) -> dict[str, np.ndarray]:
    """Boolean masks of the contents in each click bin; the bins partition the catalogue.

    Args:
        clicks_per_item (np.ndarray): Training-window clicks per content, shape ``[C]``, non-negative.
        edges (Sequence[int]): Lower edges (see :func:`check_click_bins`).

    Returns:
        dict[str, np.ndarray]: Name (:func:`click_bin_names`) -> bool mask of shape ``[C]``.
    """
    counts = np.asarray(clicks_per_item)
    if counts.ndim != 1 or (counts.size and counts.min() < 0):
        raise ValueError(f"clicks_per_item must be a non-negative vector [C], got shape {counts.shape}")
    edges = check_click_bins(edges)
    which = np.searchsorted(np.asarray(edges), counts, side="right") - 1  # bin index per content
    return {name: which == b for b, name in enumerate(click_bin_names(edges))}


def restrict_targets(targets: sp.spmatrix | sp.sparray, item_mask: np.ndarray) -> sp.csr_matrix:
    """The targets on the contents of ``item_mask`` only.

    Args:
        targets (scipy.sparse matrix): Test items, shape ``[U, C]``.
        item_mask (np.ndarray): bool of shape ``[C]``.

    Returns:
        scipy.sparse.csr_matrix: Binary ``[U, C]``, the nonzeros of ``targets`` in masked columns.
    """
    targets = _as_targets(targets, targets.shape[0])
    mask = np.asarray(item_mask, dtype=bool)
    if mask.shape != (targets.shape[1],):
        raise ValueError(f"item_mask must have shape [{targets.shape[1]}], got {mask.shape}")
    out = sp.csr_matrix(targets @ sp.diags(mask.astype(np.float64)))
    out.eliminate_zeros()
    return out


def slice_recall_at_k(recs: np.ndarray, targets: sp.spmatrix | sp.sparray, item_mask: np.ndarray,
                      k: int) -> np.ndarray:
    """Recall@k per user on the targets inside a content slice (module docstring).

    Args:
        recs (np.ndarray): Item indices in rank order, shape ``[U, K_max]``, ``-1`` = padding.
        targets (scipy.sparse matrix): Test items, shape ``[U, C]``.
        item_mask (np.ndarray): bool of shape ``[C]``: the slice's contents.
        k (int): Cut-off.

    Returns:
        np.ndarray: float64 of shape ``[U]``; ``NaN`` for users without a target in the slice.
    """
    return recall_at_k(recs, restrict_targets(targets, item_mask), k)
