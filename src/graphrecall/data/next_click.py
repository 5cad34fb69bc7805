"""Training examples for the next-click objective: (trigger content, a later click of the same user).

The article's recipe reconstructs the co-click edges the encoder aggregates over; these examples
instead ask the model what a user clicks *next* after a trigger, the question online recall asks.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from graphrecall.data.schema import TIMESTAMP
from graphrecall.data.splits import DAY


def next_click_pairs(clicks: pd.DataFrame, horizon_days: float = 1.0, context: int = 5,
                     return_times: bool = False) -> tuple[np.ndarray, ...]:
    """Pairs ``(a, b)``: content ``b`` clicked by a user after content ``a``, within ``horizon_days``.

    Each click ``b`` is paired with the user's ``context`` clicks just before it (in time order;
    clicks of the same second keep the log's order), skipping those older than the horizon and
    those on ``b`` itself. A pair appears once per (click, earlier click), so frequent
    transitions count more.

    Args:
        clicks: clicks with ``u``, ``i``, ``timestamp``.
        horizon_days: the latest a target may follow its trigger.
        context: how many earlier clicks each click is paired with.
        return_times: also return each pair's two timestamps.

    Returns:
        (trigger content rows [E], target content rows [E]) int64, and with ``return_times`` the
        trigger timestamps [E] and the target timestamps [E] (int64) as third and fourth arrays.
    """
    if context < 1:
        raise ValueError(f"model.next_click.context must be >= 1, got {context}")
    if horizon_days <= 0:
        raise ValueError(f"model.next_click.horizon_days must be > 0, got {horizon_days}")
    order = np.lexsort((clicks[TIMESTAMP].to_numpy(), clicks["u"].to_numpy()))  # stable: ties keep log order
    u = clicks["u"].to_numpy()[order]
    i = clicks["i"].to_numpy()[order].astype(np.int64)
    t = clicks[TIMESTAMP].to_numpy()[order].astype(np.int64)
    horizon = int(horizon_days * DAY)
    src, dst, when, then = [], [], [], []
    for lag in range(1, min(context, max(len(u) - 1, 0)) + 1):
        keep = (u[lag:] == u[:-lag]) & (t[lag:] - t[:-lag] <= horizon) & (i[lag:] != i[:-lag])
        src.append(i[:-lag][keep])
        dst.append(i[lag:][keep])
        when.append(t[:-lag][keep])
        then.append(t[lag:][keep])
    empty = np.zeros(0, dtype=np.int64)
    out = tuple(np.concatenate(a) for a in (src, dst, when, then)) if src else (empty,) * 4
    return out if return_times else out[:2]
