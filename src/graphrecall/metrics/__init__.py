"""Offline metrics of top-k recall lists: numpy arrays in, per-user arrays out.

- :mod:`~graphrecall.metrics.ranking`: recall, NDCG, hit rate, precision, IPS recall.
- :mod:`~graphrecall.metrics.beyond_accuracy`: coverage, average popularity, long-tail share,
  distinct label values (styles, spaces, genres).
- :mod:`~graphrecall.metrics.content_slices`: recall within content slices by training clicks
  (new / rare contents).
- :mod:`~graphrecall.metrics.pool_health`: spread of an i2i pool's first entries (hub collapse).
- :mod:`~graphrecall.metrics.correlation`: per-user rank agreement of scores with a reference.
- :mod:`~graphrecall.metrics.bootstrap`: bootstrap CIs over users and paired run comparisons.
- :mod:`~graphrecall.metrics.summary`: all of them as tables (per user, global, per slice).

Input convention: ``recs`` ``[U, K_max]`` int64 item indices in rank order, ``-1`` = padding,
training items filtered before the cut; ``targets`` CSR ``[U, C]``, nonzero = test item.
"""

from graphrecall.metrics.beyond_accuracy import (
    average_popularity_at_k,
    coverage_at_k,
    distinct_values_at_k,
    labels_to_csr,
    long_tail_share_at_k,
    tail_items,
)
from graphrecall.metrics.content_slices import (
    DEFAULT_CLICK_BINS,
    check_click_bins,
    click_bin_names,
    click_bins,
    restrict_targets,
    slice_recall_at_k,
)
from graphrecall.metrics.correlation import mean_rowwise_spearman, rowwise_spearman
from graphrecall.metrics.bootstrap import bootstrap_ci, paired_bootstrap_diff
from graphrecall.metrics.pool_health import mean_pairwise_cosine, pool_health
from graphrecall.metrics.ranking import (
    hit_matrix,
    hit_rate_at_k,
    inverse_popularity_weights,
    ips_recall_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    validate_recs,
)
from graphrecall.metrics.summary import global_metrics, per_user_metrics, summarise

__all__ = [
    "DEFAULT_CLICK_BINS",
    "check_click_bins",
    "click_bin_names",
    "click_bins",
    "restrict_targets",
    "slice_recall_at_k",
    "average_popularity_at_k",
    "bootstrap_ci",
    "coverage_at_k",
    "distinct_values_at_k",
    "global_metrics",
    "hit_matrix",
    "hit_rate_at_k",
    "inverse_popularity_weights",
    "ips_recall_at_k",
    "labels_to_csr",
    "long_tail_share_at_k",
    "mean_rowwise_spearman",
    "mean_pairwise_cosine",
    "ndcg_at_k",
    "rowwise_spearman",
    "paired_bootstrap_diff",
    "per_user_metrics",
    "pool_health",
    "precision_at_k",
    "recall_at_k",
    "summarise",
    "tail_items",
    "validate_recs",
]
