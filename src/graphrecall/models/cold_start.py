"""Cold-start simulation for the stage-1 encoder (issue 15).

A content without a click in the training window reaches the encoder with no neighbour (the
co-click graph has no edge for it) and a node-id embedding that training only ever pushed away (it
is drawn as a negative, never as a positive). Training never shows the encoder such an input on a
positive, so it does not learn to place a new content from its side info.

The simulation closes that gap (as DropoutNet, Volkovs et al., NeurIPS 2017, does for collaborative
vectors): at every training step a share ``p`` of the distinct contents among the batch's targets
(next click) or positives (reconstruction) is treated as new for that pass, i.e. it is cut off from
the graph (no neighbour, nobody's neighbour) and its node-id embedding is zeroed. So that serving
sees the same input, the contents without any click in the fold's training clicks always get a
zeroed node-id embedding while the simulation is on (they have no edge already). With
``popularity`` (next click with the learned popularity term), the drawn contents also get the
popularity features of a never-clicked content (all zero) for the pass.

Batches are unchanged when ``p = 0``: nothing is drawn from the step's generator.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def check_cold_start(cfg: dict | None) -> dict:
    """``{"share": float, "popularity": bool}`` with ``0 <= share <= 1`` (missing: 0 and false, off)."""
    cfg = {"share": 0.0, "popularity": False, **dict(cfg or {})}
    unknown = set(cfg) - {"share", "popularity"}
    if unknown:
        raise ValueError(f"model.cold_start: unknown key(s) {sorted(unknown)} (known: share, popularity)")
    share = float(cfg["share"])
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"model.cold_start.share must be in [0, 1], got {cfg['share']}")
    return {"share": share, "popularity": bool(cfg["popularity"])}


def mask_popularity(table: Tensor, drawn: Tensor) -> Tensor:
    """[K, C, F] the popularity feature table with the ``drawn`` contents' features at every moment
    set to those of a never-clicked content (all zero); a copy, ``table`` is untouched."""
    if drawn.numel() == 0:
        return table
    out = table.clone()
    out[:, drawn.to(table.device)] = 0.0
    return out


def draw_cold_targets(targets: Tensor, share: float, generator: torch.Generator | None = None) -> Tensor:
    """The distinct contents of ``targets`` treated as new for one step, each with probability ``share``.

    A content that is the target of several examples is drawn once (all its examples see it new).

    Args:
        targets: [B] content ids (the batch's next-click targets or positive neighbours).
        share: probability that a distinct target is treated as new.
        generator: the step's generator (CPU); untouched when ``share == 0``.

    Returns:
        [M] the distinct content ids drawn (sorted), on ``targets``' device.
    """
    if share <= 0.0 or targets.numel() == 0:
        return targets.new_empty(0)
    distinct = torch.unique(targets)
    if share >= 1.0:
        return distinct
    draw = torch.rand(distinct.numel(), generator=generator).to(distinct.device)
    return distinct[draw < share]


def cold_mask(num_nodes: int, always: Tensor | None, drawn: Tensor | None = None) -> Tensor:
    """[N] bool: the contents treated as new in a pass, ``always`` (the unclicked ones) plus ``drawn``."""
    mask = torch.zeros(num_nodes, dtype=torch.bool) if always is None else always.clone()
    if drawn is not None and drawn.numel():
        mask = mask.to(drawn.device)
        mask[drawn] = True
    return mask


def unclicked_contents(clicked_contents: np.ndarray, num_contents: int) -> Tensor:
    """[C] bool: contents with no click among ``clicked_contents`` (the fold's training clicks' ids)."""
    counts = np.bincount(np.asarray(clicked_contents, dtype=np.int64), minlength=num_contents)
    return torch.from_numpy(counts[:num_contents] == 0)
