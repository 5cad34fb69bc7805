"""One seed, one result: the seeds a run sets and the thread count it pins (``threads``).

A float reduction (a matmul, the sum of a batch's gradients) is split across the threads of the
CPU, and another split adds the same numbers in another order. Training then drifts along another
path, validation picks other epochs and serving settings, and one seed gives two results: the
flagship's seed 0 measured 0.3316 warm test recall@50 with one thread and 0.3078 with two (issue 25).
So every run pins its thread count in the config (``threads``, default 1) and records it; a number
quoted with a seed is the number of that seed at that thread count.

What stays exact at any thread count: the co-click graph build (its threaded product sums 0/1
incidences, integer-valued), the metrics, the bootstrap (numpy, one thread).
"""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import torch

log = logging.getLogger("graphrecall.determinism")


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def check_threads(value: Any, key: str = "threads") -> int | None:
    """``value`` as a thread count: a whole number >= 1, or None (not pinned); else a ``ValueError``
    naming ``key``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{key}={value!r}: expected a whole number of threads >= 1 (or null: the machine's "
                         "default, results then depend on the machine)")
    return int(value)


def pin_threads(threads: int | None) -> dict[str, Any]:
    """Pin torch's intra-op threads and every BLAS / OpenMP pool of the process (numpy, scipy) to
    ``threads``; None leaves the machine's defaults (and says so in the log).

    Returns:
        What the process runs with: ``{"threads": the setting, "torch_threads": torch's count}``.
    """
    threads = check_threads(threads)
    if threads is None:
        log.warning("threads=null: torch uses %d threads; another thread count can give another result for the "
                    "same seed", torch.get_num_threads())
    else:
        torch.set_num_threads(threads)
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads)  # numpy / scipy BLAS and OpenMP pools, for the rest of the process
    return {"threads": threads, "torch_threads": torch.get_num_threads()}
