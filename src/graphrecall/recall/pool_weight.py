"""The learned popularity term's weight in a pool's scores, chosen on validation under a coverage floor.

With the learned popularity term (:mod:`graphrecall.models.popularity_bias`) a stage-1 pool ranks
each trigger's row by ``<h_t, h_c> / T + w b_c``. ``b_c`` is the same in every row, so where it
outweighs the inner products every row holds the same popular contents: at the ``large`` preset
``w = 1`` (the model's own next-click score) gives the best validation recall and lists covering
0.7% of the catalogue, ``w = 0`` 98% coverage and a third of the recall (README, scale section).
The weight trades recall for coverage, and training does not depend on it: one trained model
scores every weight of a grid, each weight costing one pool.

``model.popularity.pool_weight`` takes a grid; :func:`choose_pool_weight` picks from it on the
validation fold: the best validation recall@50 among the weights whose lists cover at least
``model.popularity.pool_weight_min_coverage`` of the catalogue (coverage@50 of the validation
users' top-50 lists), the first in grid order on a tie; without a floor, the best recall.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def pool_weight_grid(value: float | Sequence[float]) -> list[float]:
    """``model.popularity.pool_weight`` as a list: one value (fixed) or a grid (chosen on validation).

    Raises:
        ValueError: an empty list, a negative weight or a weight given twice.
    """
    grid = [float(w) for w in (value if isinstance(value, (list, tuple)) else [value])]
    if not grid:
        raise ValueError("model.popularity.pool_weight must be a number >= 0 or a non-empty list of them")
    if any(w < 0 for w in grid):
        raise ValueError(f"model.popularity.pool_weight={value!r}: weights must be >= 0")
    if len(set(grid)) != len(grid):
        raise ValueError(f"model.popularity.pool_weight={value!r}: a weight is listed twice")
    return grid


def choose_pool_weight(grid: Sequence[float], recall: Mapping[float, float], coverage: Mapping[float, float],
                       min_coverage: float | None) -> tuple[float, bool]:
    """The grid's weight to serve, and whether it meets the coverage floor.

    Args:
        grid: the weights in grid order (ties go to the earlier one).
        recall: validation recall@50 of each weight's lists.
        coverage: validation coverage@50 of each weight's lists (share of the catalogue in [0, 1]).
        min_coverage: the floor; None: no floor (the best recall).

    Returns:
        ``(weight, met)``: the best recall among the weights whose coverage is at least the floor
        (``met`` True); when none reaches it, the weight with the largest coverage (``met`` False:
        the caller says so).
    """
    order = {w: i for i, w in enumerate(grid)}
    eligible = [w for w in grid if min_coverage is None or coverage[w] >= min_coverage]
    if eligible:
        return max(eligible, key=lambda w: (recall[w], -order[w])), True
    return max(grid, key=lambda w: (coverage[w], -order[w])), False
