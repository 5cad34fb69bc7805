"""Seeded synthetic home-furnishing content feed with known ground truth.

The world (design brief, section 5):

* **Contents** carry side info: one ``style``, one ``space``, one ``designer``, 1-5 mounted
  ``products`` and their ``categories`` (product -> category is a fixed map; categories lean towards
  the content's space). Each content has a latent vector built from its side info,
  ``v_i = E_style[s_i] + E_space[p_i] + mean_c E_cat[c] + noise``, and a heavy-tailed exposure prior
  (lognormal, with a few "promoted" contents boosted) that is independent of ``v_i``.
* **Users** have demographics (``age_band``, ``gender``, ``city_tier``), a ``traffic_source`` and an
  ``activity`` level (``zero`` / ``low`` / ``medium`` / ``high``). A group is one combination of
  demographics x traffic source; its interest centroid is a sparse mix of style, space and category
  embeddings; a user's interest is the centroid plus individual noise. Conformity susceptibility in
  [0, 1] is higher for low-activity users (the Matthew effect is strongest among them).
* **Clicks** come in sessions spread over ``num_days`` days. A session has an intent (one style and
  one space drawn from the user's interest), so its clicks are related. Each click is *exposure then
  choice*: a candidate set is drawn from ``(1 - uniform_exposure) * prior + uniform_exposure / C``,
  then one candidate is chosen by a softmax over

      utility(u, i) = interest_scale * <user_interest_u, content_vector_i>
                      + intent_bonus * ([style_i = intent style] + [space_i = intent space])
                      + conformity_u * gamma * log(C * prior_i)

  A few clicks repeat an earlier click of the same user.
* **Content arrival** (off in the size presets, on in ``fresh``): a share ``arrival_share`` of the
  contents is published during the log, at a uniform time; the others exist from the start. The
  content table then has a ``published_at`` column (Unix seconds; log start for the initial
  catalogue). A content has no exposure before it is published, and after it its exposure is
  multiplied by ``1 + fresh_boost * exp(-age_days / fresh_days)`` (the initial catalogue counts as
  old: no boost). Exposure is then recomputed every hour (a content becomes visible at the first
  hour boundary at or after its publication), so no click precedes its content's publication.

Because the truth is known, :func:`interest_only_test` draws clicks with conformity off, uniform
exposure and no session intent: the intervention that the DICE unbiased protocol approximates
(with arrival: uniform over the contents published by the test's start).

Everything is vectorised in numpy over batches of clicks; only fixed-size batches are looped over.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from graphrecall.data.schema import (
    CONTENT_ID,
    PUBLISHED_AT,
    TIMESTAMP,
    TRAFFIC_SOURCE,
    USER_ID,
    FeedDataset,
    build_dataset,
)

SIDE_INFO = {"style": "single", "space": "single", "designer": "single", "products": "multi", "categories": "multi"}
DIVERSITY_FIELDS = {"style": "style", "space": "space"}

START_TIMESTAMP = 1767225600  # 2026-01-01 00:00:00 UTC
DAY = 86_400

STYLE_NAMES = (
    "nordic", "japanese", "modern_minimal", "industrial", "mid_century", "french",
    "american", "new_chinese", "mediterranean", "wabi_sabi", "bohemian", "luxury",
)  # fmt: skip
SPACE_NAMES = ("living_room", "bedroom", "kitchen", "bathroom", "dining_room", "study", "kids_room", "balcony")
AGE_BANDS = ("18-24", "25-34", "35-44", "45+")
GENDERS = ("female", "male")
CITY_TIERS = ("tier1", "tier2", "tier3")
TRAFFIC_SOURCES = ("home_card", "search", "channel", "message")
ACTIVITY_LEVELS = ("zero", "low", "medium", "high")

# Clicks are simulated in batches of this many; it is fixed because results depend on it.
_BATCH = 1 << 16
# With content arrival, exposure is recomputed once per slot of this many seconds.
_SLOT = 3_600


@dataclass(frozen=True)
class SyntheticConfig:
    """All knobs of the generator; presets override the sizes.

    Attributes:
        num_users: users in the user table (including zero-activity users).
        num_contents: contents in the catalogue.
        num_clicks: clicks generated (before the rare exact duplicates are dropped).
        num_days: days covered by the click log, starting at ``start_timestamp``.
        num_styles / num_spaces / num_designers / num_categories / num_products: side-info sizes.
        max_products: most products mounted on one content (at least 1).
        dim: dimension of the latent interest space.
        content_noise: std of the content-specific part of the content vector (relative to a unit
            side-info embedding).
        user_noise: norm of the individual part of a user's interest (the group centroid has norm 1).
        popularity_sigma: lognormal sigma of the exposure prior (heavier tail when larger).
        promoted_share / promotion_boost: share of contents whose prior is multiplied by the boost.
        activity_shares: shares of users at activity levels zero, low, medium, high.
        low_max_clicks: low-activity users click 1..low_max_clicks times.
        high_activity_ratio: expected clicks of a high- vs a medium-activity user.
        conformity_beta: Beta(a, b) of conformity per activity level (zero, low, medium, high).
        mean_session_length / max_session_length: session length is geometric, capped.
        num_candidates: size of the exposed candidate set per click.
        uniform_exposure: share of exposures drawn uniformly over the catalogue instead of by the
            popularity prior (with arrival: over the published contents, each weighted by its
            freshness multiplier, like the prior part).
        interest_scale: weight of the true interest in the click utility.
        intent_bonus: utility bonus per matched session intent (style, space).
        intent_temperature: sharpness of drawing the session intent from the user's interest.
        gamma: weight of conformity x log-popularity in the click utility.
        repeat_prob: probability that a click repeats an earlier click of the same user.
        start_timestamp: Unix seconds of the first day.
        arrival_share: share of contents published during the log (uniformly over its time); the
            others exist from the start. 0 (the size presets) turns arrival off: no
            ``published_at`` column and the pre-arrival simulation, bit for bit.
        fresh_boost / fresh_days: after publication, a content's exposure is multiplied by
            ``1 + fresh_boost * exp(-age_days / fresh_days)``; contents present from the start
            get no boost. Only used when ``arrival_share > 0``.
    """

    num_users: int = 5_000
    num_contents: int = 2_000
    num_clicks: int = 100_000
    num_days: int = 30
    num_styles: int = 12
    num_spaces: int = 8
    num_designers: int = 150
    num_categories: int = 60
    num_products: int = 1_000
    max_products: int = 5
    dim: int = 16
    content_noise: float = 0.3
    user_noise: float = 0.5
    popularity_sigma: float = 1.3
    promoted_share: float = 0.02
    promotion_boost: float = 5.0
    activity_shares: tuple[float, float, float, float] = (0.3, 0.4, 0.2, 0.1)
    low_max_clicks: int = 5
    high_activity_ratio: float = 5.0
    conformity_beta: tuple[tuple[float, float], ...] = ((5.0, 2.0), (5.0, 2.0), (3.0, 3.0), (2.0, 5.0))
    mean_session_length: float = 4.0
    max_session_length: int = 50
    num_candidates: int = 25
    uniform_exposure: float = 0.3
    interest_scale: float = 4.0
    intent_bonus: float = 2.0
    intent_temperature: float = 4.0
    gamma: float = 1.0
    repeat_prob: float = 0.03
    start_timestamp: int = START_TIMESTAMP
    arrival_share: float = 0.0
    fresh_boost: float = 0.0
    fresh_days: float = 3.0


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(num_users=300, num_contents=200, num_clicks=5_000, num_designers=20, num_categories=30,
                 num_products=150),
    "small": dict(num_users=5_000, num_contents=2_000, num_clicks=100_000, num_designers=150,
                  num_categories=60, num_products=1_000),
    "medium": dict(num_users=50_000, num_contents=20_000, num_clicks=1_000_000, num_designers=1_000,
                   num_categories=100, num_products=8_000),
    "large": dict(num_users=1_000_000, num_contents=100_000, num_clicks=10_000_000, num_designers=4_000,
                  num_categories=150, num_products=30_000),
}  # fmt: skip
# The article's regime: `small` with half the catalogue published during the log (~33 a day), a
# freshness boost on new contents and mostly popularity-blind exposure.
PRESETS["fresh"] = dict(PRESETS["small"], arrival_share=0.5, fresh_boost=4.0, fresh_days=3.0, uniform_exposure=0.6)


def make_config(preset: str = "small", **overrides: Any) -> SyntheticConfig:
    """Resolve a preset name plus keyword overrides into a :class:`SyntheticConfig`.

    Raises:
        ValueError: unknown preset or unknown override name.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown synthetic preset '{preset}'; choose one of {sorted(PRESETS)}")
    known = {f.name for f in dataclasses.fields(SyntheticConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown synthetic parameter(s) {unknown}; known: {sorted(known)}")
    cfg = SyntheticConfig(**{**PRESETS[preset], **overrides})
    if cfg.num_users < 1 or cfg.num_contents < 2 or cfg.num_clicks < 1 or cfg.num_days < 1:
        raise ValueError(f"synthetic sizes must be positive, got {cfg}")
    if cfg.num_categories > cfg.num_products:
        raise ValueError("num_products must be at least num_categories (every category has a product)")
    if not 0.0 <= cfg.arrival_share < 1.0:
        raise ValueError(f"arrival_share must be in [0, 1) (some contents exist at the start), got {cfg.arrival_share}")
    if not 0.0 <= cfg.uniform_exposure <= 1.0:
        raise ValueError(f"uniform_exposure must be in [0, 1], got {cfg.uniform_exposure}")
    if cfg.fresh_boost < 0 or cfg.fresh_days <= 0:
        raise ValueError(f"need fresh_boost >= 0 and fresh_days > 0, got {cfg.fresh_boost} and {cfg.fresh_days}")
    return cfg


def _names(base: tuple[str, ...], n: int, prefix: str) -> np.ndarray:
    """Readable value names: the first ``len(base)`` from ``base``, then ``prefix_NN``."""
    extra = [f"{prefix}_{k:02d}" for k in range(len(base), n)]
    return np.array([*base[:n], *extra], dtype=object)


def _unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """Random unit vectors, shape [n, dim] (float32)."""
    x = rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _group_ragged(keys: np.ndarray, values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Unique sorted (key, value) pairs as CSR.

    Args:
        keys: [m] row index in [0, n).
        values: [m] non-negative ints.
        n: number of rows.

    Returns:
        indptr [n + 1], values [k] sorted within each row, duplicates removed.
    """
    pairs = np.unique(keys.astype(np.int64) * (int(values.max()) + 1) + values)
    k, v = np.divmod(pairs, int(values.max()) + 1)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(k, minlength=n), out=indptr[1:])
    return indptr, v


def _ragged_lists(indptr: np.ndarray, values: np.ndarray, names: np.ndarray) -> list[list[str]]:
    """CSR rows -> list of lists of names (one Python list per content, not per click)."""
    named = names[values]
    return [list(row) for row in np.split(named, indptr[1:-1])]


def _make_contents(cfg: SyntheticConfig, rng: np.random.Generator) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Catalogue with side info, content vectors and exposure prior.

    Returns:
        The content table and arrays: ``content_vector`` [C, d], ``popularity_prior`` [C] (sums to 1),
        ``style`` [C], ``space`` [C] (int codes), ``style_emb`` [S, d], ``space_emb`` [P, d],
        ``category_emb`` [K, d].
    """
    C, S, P, K, d = cfg.num_contents, cfg.num_styles, cfg.num_spaces, cfg.num_categories, cfg.dim
    style_emb, space_emb, category_emb = _unit_rows(rng, S, d), _unit_rows(rng, P, d), _unit_rows(rng, K, d)

    # Styles and spaces are not equally common; designers are prolific to different degrees and
    # mostly work in their signature style.
    style_share = rng.dirichlet(np.full(S, 3.0))
    space_share = rng.dirichlet(np.full(P, 3.0))
    designer_style = rng.choice(S, size=cfg.num_designers, p=style_share)
    designer_share = rng.pareto(1.5, cfg.num_designers) + 1.0
    designer = rng.choice(cfg.num_designers, size=C, p=designer_share / designer_share.sum())
    style = np.where(rng.random(C) < 0.6, designer_style[designer], rng.choice(S, size=C, p=style_share))
    space = rng.choice(P, size=C, p=space_share)

    # Products: each category owns a block of products and has a home space; a content's products
    # come mostly from categories of its own space (a bedroom post shows beds and wardrobes).
    product_category = np.sort(np.concatenate([np.arange(K), rng.integers(0, K, cfg.num_products - K)]))
    cat_first = np.searchsorted(product_category, np.arange(K))
    cat_size = np.bincount(product_category, minlength=K)
    n_prod = rng.integers(1, cfg.max_products + 1, size=C)
    slot_content = np.repeat(np.arange(C), n_prod)
    # Categories of space p are p, p + P, p + 2P, ... < K: pick one of them by index arithmetic.
    n_cat_of_space = np.maximum((K - np.arange(P) + P - 1) // P, 0)
    slot_space = space[slot_content]
    own_space = (rng.random(len(slot_content)) < 0.7) & (n_cat_of_space[slot_space] > 0)
    own_cat = slot_space + P * (rng.random(len(slot_content)) * n_cat_of_space[slot_space]).astype(np.int64)
    slot_cat = np.where(own_space, own_cat, rng.integers(0, K, len(slot_content)))
    slot_product = cat_first[slot_cat] + (rng.random(len(slot_content)) * cat_size[slot_cat]).astype(np.int64)
    prod_ptr, prod_val = _group_ragged(slot_content, slot_product, C)
    cat_ptr, cat_val = _group_ragged(slot_content, slot_cat, C)

    # Content vector: side info + a content-specific part; category part = mean over its categories.
    cat_counts = np.diff(cat_ptr)
    cat_mean = np.add.reduceat(category_emb[cat_val], cat_ptr[:-1], axis=0) / cat_counts[:, None]
    noise = rng.standard_normal((C, d)).astype(np.float32) * (cfg.content_noise / np.sqrt(d))
    content_vector = (style_emb[style] + space_emb[space] + cat_mean + noise).astype(np.float32)

    # Exposure prior: lognormal long tail, a few promoted contents on top; independent of v_i.
    prior = rng.lognormal(0.0, cfg.popularity_sigma, C)
    prior[rng.random(C) < cfg.promoted_share] *= cfg.promotion_boost
    prior /= prior.sum()

    names_style = _names(STYLE_NAMES, S, "style")
    names_space = _names(SPACE_NAMES, P, "space")
    names_designer = np.array([f"designer_{k:05d}" for k in range(cfg.num_designers)], dtype=object)
    names_product = np.array([f"p{k:06d}" for k in range(cfg.num_products)], dtype=object)
    names_category = np.array([f"cat_{k:03d}" for k in range(K)], dtype=object)
    contents = pd.DataFrame(
        {
            CONTENT_ID: np.arange(C, dtype=np.int64),
            "style": names_style[style],
            "space": names_space[space],
            "designer": names_designer[designer],
            "products": _ragged_lists(prod_ptr, prod_val, names_product),
            "categories": _ragged_lists(cat_ptr, cat_val, names_category),
        }
    )
    arrays = dict(
        content_vector=content_vector, popularity_prior=prior, style=style, space=space,
        style_emb=style_emb, space_emb=space_emb, category_emb=category_emb,
    )  # fmt: skip
    return contents, arrays


def _sparse_mix(rng: np.random.Generator, n: int, emb: np.ndarray, alpha: float) -> np.ndarray:
    """[n, d] sparse Dirichlet mixes of the rows of ``emb`` [m, d] (a taste for a few values)."""
    return (rng.dirichlet(np.full(len(emb), alpha), size=n) @ emb).astype(np.float32)


def _make_users(
    cfg: SyntheticConfig, rng: np.random.Generator, world: dict[str, np.ndarray]
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """User table, groups, interests and conformity.

    Returns:
        The user table and arrays: ``user_interest`` [U, d], ``conformity`` [U], ``user_group`` [U],
        ``group_centroid`` [G, d], ``activity`` [U] (level code), ``traffic`` [U] (source code).
    """
    U, d = cfg.num_users, cfg.dim
    shapes = (len(AGE_BANDS), len(GENDERS), len(CITY_TIERS), len(TRAFFIC_SOURCES))
    age = rng.choice(shapes[0], U, p=[0.2, 0.35, 0.25, 0.2])
    gender = rng.choice(shapes[1], U, p=[0.6, 0.4])
    tier = rng.choice(shapes[2], U, p=[0.3, 0.4, 0.3])
    traffic = rng.choice(shapes[3], U, p=[0.6, 0.15, 0.15, 0.1])
    group = np.ravel_multi_index((age, gender, tier, traffic), shapes).astype(np.int64)
    G = int(np.prod(shapes))

    # Centroid = a part shared by groups with the same age band, gender, ... (weight 0.5) plus a
    # group-specific part; each part is a sparse taste over styles, spaces and categories.
    def taste(n: int) -> np.ndarray:
        return (
            _sparse_mix(rng, n, world["style_emb"], 0.3)
            + _sparse_mix(rng, n, world["space_emb"], 0.3)
            + _sparse_mix(rng, n, world["category_emb"], 0.2)
        )

    attr_taste = [taste(s) for s in shapes]
    a, g, t, s = np.unravel_index(np.arange(G), shapes)
    centroid = 0.5 * (attr_taste[0][a] + attr_taste[1][g] + attr_taste[2][t] + attr_taste[3][s]) / 4 + taste(G)
    centroid /= np.linalg.norm(centroid, axis=1, keepdims=True)
    noise = rng.standard_normal((U, d)).astype(np.float32) * (cfg.user_noise / np.sqrt(d))
    user_interest = (centroid[group] + noise).astype(np.float32)

    shares = np.asarray(cfg.activity_shares, dtype=float)
    activity = rng.choice(len(ACTIVITY_LEVELS), U, p=shares / shares.sum())
    ab = np.asarray(cfg.conformity_beta, dtype=float)
    conformity = rng.beta(ab[activity, 0], ab[activity, 1]).astype(np.float32)

    users = pd.DataFrame(
        {
            USER_ID: np.arange(U, dtype=np.int64),
            "age_band": np.array(AGE_BANDS, dtype=object)[age],
            "gender": np.array(GENDERS, dtype=object)[gender],
            "city_tier": np.array(CITY_TIERS, dtype=object)[tier],
            TRAFFIC_SOURCE: np.array(TRAFFIC_SOURCES, dtype=object)[traffic],
            "activity": np.array(ACTIVITY_LEVELS, dtype=object)[activity],
        }
    )
    arrays = dict(
        user_interest=user_interest, conformity=conformity, user_group=group,
        group_centroid=centroid.astype(np.float32), activity=activity, traffic=traffic,
    )  # fmt: skip
    return users, arrays


def _clicks_per_user(cfg: SyntheticConfig, rng: np.random.Generator, activity: np.ndarray) -> np.ndarray:
    """Clicks of each user, [U] int64, summing to ``num_clicks`` when the sizes allow it.

    Zero-activity users get none, low-activity users 1..low_max_clicks, and medium / high users share
    the rest in proportion to a lognormal rate (high users ``high_activity_ratio`` times more).
    """
    n = np.zeros(len(activity), dtype=np.int64)
    low = activity == 1
    n[low] = rng.integers(1, cfg.low_max_clicks + 1, int(low.sum()))
    active = np.flatnonzero(activity >= 2)
    if len(active) == 0:
        return n
    rate = rng.lognormal(0.0, 0.8, len(active)) * np.where(activity[active] == 3, cfg.high_activity_ratio, 1.0)
    rest = max(cfg.num_clicks - int(n.sum()) - len(active), 0)
    n[active] = 1 + rng.multinomial(rest, rate / rate.sum())
    return n


def _sessions(
    cfg: SyntheticConfig, rng: np.random.Generator, n_per_user: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lay the clicks of every user out in sessions and time.

    Args:
        n_per_user: [U] clicks per user.

    Returns:
        click_user [N], click_session [N] (global session index, contiguous and increasing),
        click_time [N] int64 Unix seconds; clicks ordered by user, session, position.
    """
    N = int(n_per_user.sum())
    click_user = np.repeat(np.arange(len(n_per_user), dtype=np.int64), n_per_user)
    first = rng.random(N) < 1.0 / cfg.mean_session_length
    first[(np.cumsum(n_per_user) - n_per_user)[n_per_user > 0]] = True  # each user's first click
    # Cap session length: force a break every max_session_length clicks inside a long session.
    sid = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    pos = np.arange(N) - starts[sid]
    first |= (pos > 0) & (pos % cfg.max_session_length == 0)
    sid = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    n_sessions = len(starts)

    # Seconds between clicks inside a session (>= 1 s, so timestamps strictly increase).
    gaps = np.where(first, 0, 1 + np.minimum(rng.exponential(45.0, N), 900.0).astype(np.int64))
    cum = np.cumsum(gaps)
    offset = cum - cum[starts][sid]
    ends = np.append(starts[1:], N) - 1
    span = offset[ends]
    day = rng.integers(0, cfg.num_days, n_sessions)
    # Sessions stay inside their day; time of day weighted towards the evening by a power law.
    start_in_day = (np.maximum(DAY - 1 - span, 0) * rng.random(n_sessions) ** 0.7).astype(np.int64)
    session_time = cfg.start_timestamp + day * DAY + start_in_day
    return click_user, sid, session_time[sid] + offset


def _alias_table(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker/Vose alias table for O(1) sampling from a discrete distribution.

    Built with a loop over categories (not over draws); sampling is then two vectorised lookups,
    several times faster than ``searchsorted`` on a CDF for millions of draws.

    Args:
        p: [n] probabilities (need not be normalised).

    Returns:
        accept [n] float64 and alias [n] int64: draw ``j`` uniformly, keep it with probability
        ``accept[j]``, else take ``alias[j]``.
    """
    n = len(p)
    scaled = (np.asarray(p, dtype=np.float64) * (n / np.sum(p))).tolist()
    accept, alias = [1.0] * n, list(range(n))
    small = [i for i, x in enumerate(scaled) if x < 1.0]
    large = [i for i, x in enumerate(scaled) if x >= 1.0]
    while small and large:
        s, g = small.pop(), large.pop()
        accept[s], alias[s] = scaled[s], g
        scaled[g] -= 1.0 - scaled[s]
        (small if scaled[g] < 1.0 else large).append(g)
    # Leftovers are 1 up to rounding and keep accept = 1.
    return np.array(accept), np.array(alias, dtype=np.int64)


def _sample_alias(rng: np.random.Generator, table: tuple[np.ndarray, np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """Draws of shape ``shape`` (int64) from an alias table."""
    accept, alias = table
    j = rng.integers(0, len(accept), shape)
    return np.where(rng.random(shape) < np.take(accept, j), j, np.take(alias, j))


def _gumbel(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard Gumbel noise (float32): argmax(logits + noise) samples softmax(logits)."""
    e = rng.standard_exponential(shape, dtype=np.float32)
    return -np.log(np.maximum(e, np.finfo(np.float32).tiny))  # an exact 0 would give +inf


def _draw_intents(
    cfg: SyntheticConfig, rng: np.random.Generator, session_user: np.ndarray, users: dict, world: dict
) -> tuple[np.ndarray, np.ndarray]:
    """Session intent: one style and one space per session, drawn from softmax of the user's affinity.

    Returns:
        intent_style [n_sessions], intent_space [n_sessions] (int codes).
    """
    out = []
    for emb in (world["style_emb"], world["space_emb"]):
        logits = cfg.intent_temperature * (users["user_interest"] @ emb.T)  # [U, S]
        codes = np.empty(len(session_user), dtype=np.int64)
        for lo in range(0, len(session_user), _BATCH * 4):
            su = session_user[lo : lo + _BATCH * 4]
            g = logits[su] + _gumbel(rng, (len(su), len(emb)))
            codes[lo : lo + len(su)] = np.argmax(g, axis=1)
        out.append(codes)
    return out[0], out[1]


def _choose(
    rng: np.random.Generator,
    candidates: np.ndarray,
    user_vec: np.ndarray,
    content_vector: np.ndarray,
    bias: np.ndarray | float,
    interest_scale: float,
) -> np.ndarray:
    """Softmax choice among candidates by Gumbel-max.

    Args:
        candidates: [B, K] content rows exposed for each click.
        user_vec: [B, d] interest of the clicking user.
        content_vector: [C, d].
        bias: [B, K] extra utility (intent, conformity) or a scalar.
        interest_scale: weight of the interest dot product.

    Returns:
        [B] chosen content rows.
    """
    # np.take is several times faster than fancy indexing for this [B, K, d] gather.
    interest = np.matmul(np.take(content_vector, candidates, axis=0), user_vec[:, :, None])[:, :, 0]  # [B, K]
    utility = interest_scale * interest + bias
    utility += _gumbel(rng, candidates.shape)
    return candidates[np.arange(len(candidates)), np.argmax(utility, axis=1)]


def _make_arrivals(cfg: SyntheticConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Publication times: ``round(arrival_share * C)`` random contents appear during the log.

    Returns:
        published_at [C] int64 Unix seconds (``start_timestamp`` for the initial catalogue, else
        uniform in the log's seconds after its start) and boost_from [C] float64 (the publication
        time of arrivals, -inf for the initial catalogue, which gets no freshness boost).
    """
    C = cfg.num_contents
    n_new = int(round(cfg.arrival_share * C))
    new = rng.permutation(C)[:n_new]
    published_at = np.full(C, cfg.start_timestamp, dtype=np.int64)
    published_at[new] = cfg.start_timestamp + rng.integers(1, cfg.num_days * DAY, n_new)
    boost_from = np.full(C, -np.inf)
    boost_from[new] = published_at[new]
    return published_at, boost_from


def _slot_exposure_cdf(
    cfg: SyntheticConfig, prior: np.ndarray, published_at: np.ndarray, boost_from: np.ndarray, slot_start: int
) -> np.ndarray:
    """Exposure CDF [C] (float64, last value 1) for clicks in the slot that starts at ``slot_start``.

    Contents published after the slot start get zero; the others get the freshness multiplier at
    the slot's midpoint times the mixture ``(1 - uniform_exposure) * prior + uniform_exposure *
    uniform``, each part normalised over the visible contents.
    """
    visible = published_at <= slot_start
    age_days = np.maximum(slot_start + _SLOT / 2 - boost_from, 0.0) / DAY  # +inf for the initial catalogue
    boost = np.where(visible, 1.0 + cfg.fresh_boost * np.exp(-age_days / cfg.fresh_days), 0.0)
    by_prior = boost * prior
    w = (1.0 - cfg.uniform_exposure) * by_prior / by_prior.sum() + cfg.uniform_exposure * boost / boost.sum()
    cdf = np.cumsum(w)
    return cdf / cdf[-1]


def _choose_exposed(
    cfg: SyntheticConfig,
    rng: np.random.Generator,
    cand: np.ndarray,
    u: np.ndarray,
    s: np.ndarray,
    users: dict[str, np.ndarray],
    world: dict[str, np.ndarray],
    intents: tuple[np.ndarray, np.ndarray],
    log_pop: np.ndarray,
) -> np.ndarray:
    """One choice per click among its exposed candidates.

    Args:
        cand: [B, K] exposed content rows.
        u: [B] clicking user rows.
        s: [B] session index of each click (row of the session intents).
        intents: intent style and intent space per session, [n_sessions] each.
        log_pop: [C] ``log(C * prior)`` (float32), the conformity signal.

    Returns:
        [B] chosen content rows.
    """
    matches = (np.take(world["style"], cand) == intents[0][s][:, None]).astype(np.float32)
    matches += np.take(world["space"], cand) == intents[1][s][:, None]
    bias = np.float32(cfg.intent_bonus) * matches
    bias += (users["conformity"][u] * np.float32(cfg.gamma))[:, None] * np.take(log_pop, cand)
    return _choose(rng, cand, users["user_interest"][u], world["content_vector"], bias, cfg.interest_scale)


def _simulate_clicks(
    cfg: SyntheticConfig,
    rng: np.random.Generator,
    click_user: np.ndarray,
    click_session: np.ndarray,
    users: dict[str, np.ndarray],
    world: dict[str, np.ndarray],
    click_time: np.ndarray | None = None,
    arrivals: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Exposure then choice for every click.

    Without ``arrivals`` the exposure is fixed and clicks go in fixed-size batches; with them
    (``published_at`` [C], ``boost_from`` [C] from :func:`_make_arrivals`) clicks go slot by slot
    (``_SLOT`` seconds of ``click_time`` [N]), each slot with its own exposure CDF.

    Returns:
        [N] clicked content rows (int64).
    """
    C = cfg.num_contents
    prior = world["popularity_prior"]
    log_pop = np.log(C * prior).astype(np.float32)
    session_user = click_user[np.flatnonzero(np.diff(click_session, prepend=-1))]
    intents = _draw_intents(cfg, rng, session_user, users, world)
    N, K = len(click_user), cfg.num_candidates
    chosen = np.empty(N, dtype=np.int64)
    if arrivals is None:
        exposure = _alias_table((1.0 - cfg.uniform_exposure) * prior + cfg.uniform_exposure / C)
        for lo in range(0, N, _BATCH):
            u = click_user[lo : lo + _BATCH]
            s = click_session[lo : lo + _BATCH]
            cand = _sample_alias(rng, exposure, (len(u), K))
            chosen[lo : lo + len(u)] = _choose_exposed(cfg, rng, cand, u, s, users, world, intents, log_pop)
    else:
        if click_time is None:
            raise ValueError("_simulate_clicks: content arrival needs click_time")
        published_at, boost_from = arrivals
        slot = (click_time - cfg.start_timestamp) // _SLOT
        order = np.argsort(slot, kind="stable")
        bounds = np.flatnonzero(np.diff(slot[order], prepend=-1, append=-1))
        for a, b in zip(bounds[:-1], bounds[1:]):
            rows = order[a:b]
            slot_start = cfg.start_timestamp + int(slot[rows[0]]) * _SLOT
            cdf = _slot_exposure_cdf(cfg, prior, published_at, boost_from, slot_start)
            cand = np.minimum(np.searchsorted(cdf, rng.random((len(rows), K)), side="right"), C - 1)
            u, s = click_user[rows], click_session[rows]
            chosen[rows] = _choose_exposed(cfg, rng, cand, u, s, users, world, intents, log_pop)

    # Occasional re-clicks: copy the content of a random earlier click of the same user.
    if N > 1 and cfg.repeat_prob > 0:
        first_of_user = np.flatnonzero(np.diff(click_user, prepend=-1))
        user_first = first_of_user[np.searchsorted(first_of_user, np.arange(N), side="right") - 1]
        k = np.arange(N) - user_first
        rep = (k > 0) & (rng.random(N) < cfg.repeat_prob)
        src = user_first[rep] + (rng.random(int(rep.sum())) * k[rep]).astype(np.int64)
        if arrivals is not None:  # sessions are not in time order: never repeat a not yet published content
            ok = arrivals[0][chosen[src]] <= click_time[rep]
            rep[np.flatnonzero(rep)[~ok]] = False
            src = src[ok]
        chosen[rep] = chosen[src]  # sources read before assignment: a repeat copies an original pick
    return chosen


def generate_home_feed(preset: str = "small", seed: int = 0, **overrides: Any) -> FeedDataset:
    """Generate the synthetic home feed.

    Args:
        preset: ``tiny`` (~5k clicks), ``small`` (~100k), ``medium`` (~1M), ``large`` (~10M), or
            ``fresh`` (``small`` with content arrival: half the catalogue published during the log,
            freshness boost 4 decaying over 3 days, uniform exposure 0.6).
        seed: random seed; the same seed and parameters give identical tables and truth.
        **overrides: any :class:`SyntheticConfig` field, e.g. ``num_clicks=20_000``.

    Returns:
        A :class:`FeedDataset` named ``synthetic``; its content table has ``published_at`` only
        when ``arrival_share > 0``. ``truth`` holds, aligned to the row order of the
        user and content tables: ``user_interest`` [U, d], ``content_vector`` [C, d], ``conformity``
        [U], ``popularity_prior`` [C] (exposure prior, sums to 1), ``user_group`` [U] (int),
        ``group_centroid`` [G, d]; aligned to the click table: ``click_session`` [N] (session index);
        and the scalars ``interest_scale``, ``num_candidates``, ``start_timestamp``,
        ``end_timestamp`` (0-d arrays) used by :func:`interest_only_test`.
    """
    cfg = make_config(preset, **overrides)
    # Independent streams per part: changing the click count does not change the world.
    # (spawn(6)[:5] == spawn(5): the arrival stream leaves the others as they were before it existed.)
    rng_contents, rng_users, rng_activity, rng_sessions, rng_clicks, rng_arrival = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(6)
    )
    contents, world = _make_contents(cfg, rng_contents)
    users, people = _make_users(cfg, rng_users, world)
    n_per_user = _clicks_per_user(cfg, rng_activity, people["activity"])
    click_user, click_session, click_time = _sessions(cfg, rng_sessions, n_per_user)
    arrivals = _make_arrivals(cfg, rng_arrival) if cfg.arrival_share > 0 else None
    if arrivals is not None:
        contents[PUBLISHED_AT] = arrivals[0]
    click_content = _simulate_clicks(cfg, rng_clicks, click_user, click_session, people, world, click_time, arrivals)

    # Order as build_dataset will (stable by time, user) and drop exact duplicates here, so that
    # click_session stays aligned with the validated table.
    order = np.lexsort((click_user, click_time))
    click_user, click_content, click_time, click_session = (
        a[order] for a in (click_user, click_content, click_time, click_session)
    )
    key = pd.DataFrame({"u": click_user, "c": click_content, "t": click_time})
    keep = ~key.duplicated().to_numpy()
    clicks = pd.DataFrame(
        {
            USER_ID: click_user[keep],
            CONTENT_ID: click_content[keep],
            TIMESTAMP: click_time[keep],
            TRAFFIC_SOURCE: pd.Categorical.from_codes(
                people["traffic"][click_user[keep]], categories=list(TRAFFIC_SOURCES)
            ).astype(str),
        }
    )
    truth = {
        "user_interest": people["user_interest"],
        "content_vector": world["content_vector"],
        "conformity": people["conformity"],
        "popularity_prior": world["popularity_prior"],
        "user_group": people["user_group"],
        "group_centroid": people["group_centroid"],
        "click_session": click_session[keep],
        "interest_scale": np.float64(cfg.interest_scale),
        "num_candidates": np.int64(cfg.num_candidates),
        "start_timestamp": np.int64(cfg.start_timestamp),
        "end_timestamp": np.int64(cfg.start_timestamp + cfg.num_days * DAY),
    }
    ds = build_dataset("synthetic", clicks, contents, users, SIDE_INFO, DIVERSITY_FIELDS, truth=truth)
    if len(ds.clicks) != len(truth["click_session"]):  # would mean validation dropped or reordered rows
        raise RuntimeError("synthetic clicks changed during validation; click_session is misaligned")
    return ds


def true_interest_scores(
    truth: dict[str, Any], user_rows: np.ndarray, content_rows: np.ndarray | None = None
) -> np.ndarray:
    """True interest ``<user_interest_u, content_vector_i>`` (without ``interest_scale``).

    Args:
        truth: ``FeedDataset.truth`` of a synthetic dataset.
        user_rows: [n] row positions in the user table (== user ids for synthetic data).
        content_rows: [m] row positions in the content table; all contents when None.

    Returns:
        [n, m] float32 scores.
    """
    cv = truth["content_vector"] if content_rows is None else truth["content_vector"][np.asarray(content_rows)]
    return truth["user_interest"][np.asarray(user_rows)] @ cv.T


def interest_only_test(
    dataset: FeedDataset,
    user_ids: np.ndarray | list,
    clicks_per_user: int = 10,
    start_timestamp: int | None = None,
    seed: int = 0,
    exclude_seen: bool = True,
) -> pd.DataFrame:
    """Test clicks under the intervention: uniform exposure, conformity off, no session intent.

    Each click draws ``num_candidates`` contents uniformly and picks one by a softmax over
    ``interest_scale * <user_interest, content_vector>`` alone. Repeated (user, content) pairs within
    the test are dropped, so a user can get slightly fewer than ``clicks_per_user`` clicks. When the
    content table has ``published_at``, candidates are drawn only among the contents published by
    ``start_timestamp``.

    Args:
        dataset: a dataset from :func:`generate_home_feed` (needs ``truth``).
        user_ids: [n] users to draw test clicks for.
        clicks_per_user: draws per user.
        start_timestamp: Unix seconds of the first test click; defaults to the end of the log.
        seed: random seed (deterministic given seed and inputs).
        exclude_seen: give contents the user clicked in ``dataset.clicks`` zero probability, since
            evaluation filters training items anyway.

    Returns:
        Canonical click table ``user_id, content_id, timestamp, traffic_source``, sorted by
        (timestamp, user_id).
    """
    truth = dataset.truth
    if truth is None or "user_interest" not in truth:
        raise ValueError(f"interest_only_test needs a synthetic dataset with truth, got '{dataset.name}'")
    rng = np.random.default_rng(seed)
    user_ids = np.asarray(user_ids)
    user_index = pd.Index(dataset.users[USER_ID])
    rows = user_index.get_indexer(user_ids)
    if (rows < 0).any():
        raise ValueError(f"interest_only_test: unknown user id(s) {user_ids[rows < 0][:5].tolist()}")
    C = dataset.num_contents
    content_index = pd.Index(dataset.contents[CONTENT_ID])
    K = int(truth["num_candidates"])
    start = int(truth["end_timestamp"]) if start_timestamp is None else int(start_timestamp)
    visible = np.arange(C)
    if PUBLISHED_AT in dataset.contents.columns:
        visible = np.flatnonzero(dataset.contents[PUBLISHED_AT].to_numpy() <= start)
        if len(visible) == 0:
            raise ValueError(f"interest_only_test: no content is published by start_timestamp={start}")
    click_row = np.repeat(rows, clicks_per_user)
    click_pos = np.repeat(np.arange(len(rows)), clicks_per_user)  # which requested user
    click_k = np.tile(np.arange(clicks_per_user), len(rows))  # draw number within the user
    seen_keys = None
    if exclude_seen:
        crow = content_index.get_indexer(dataset.clicks[CONTENT_ID])
        urow = user_index.get_indexer(dataset.clicks[USER_ID])
        seen_keys = np.unique(urow.astype(np.int64) * C + crow)
    chosen = np.empty(len(click_row), dtype=np.int64)
    for lo in range(0, len(click_row), _BATCH):
        u = click_row[lo : lo + _BATCH]
        cand = visible[rng.integers(0, len(visible), (len(u), K))]  # all published: the same draws as before
        bias: np.ndarray | float = 0.0
        if seen_keys is not None:
            keys = u[:, None] * C + cand
            pos = np.minimum(np.searchsorted(seen_keys, keys), len(seen_keys) - 1)
            bias = np.where(seen_keys[pos] == keys, -np.inf, 0.0).astype(np.float32)
        user_vec = truth["user_interest"][u]
        scale = float(truth["interest_scale"])
        chosen[lo : lo + len(u)] = _choose(rng, cand, user_vec, truth["content_vector"], bias, scale)
    if seen_keys is not None:  # a candidate set made only of seen contents yields no click
        keep = ~np.isin(click_row * C + chosen, seen_keys)
        click_row, click_pos, click_k, chosen = click_row[keep], click_pos[keep], click_k[keep], chosen[keep]

    user_offset = rng.integers(0, DAY // 2, len(rows))  # each user visits once on the test day
    ts = start + user_offset[click_pos] + 60 * click_k
    out = pd.DataFrame(
        {
            USER_ID: dataset.users[USER_ID].to_numpy()[click_row],
            CONTENT_ID: dataset.contents[CONTENT_ID].to_numpy()[chosen],
            TIMESTAMP: ts.astype(np.int64),
        }
    )
    if TRAFFIC_SOURCE in dataset.users.columns:
        out[TRAFFIC_SOURCE] = dataset.users[TRAFFIC_SOURCE].to_numpy()[click_row]
    out = out.drop_duplicates(subset=[USER_ID, CONTENT_ID])
    return out.sort_values([TIMESTAMP, USER_ID], kind="stable").reset_index(drop=True)


def save_truth(truth: dict[str, Any], path: str | Path) -> Path:
    """Save a truth dict of arrays to an ``.npz`` file (uncompressed, so loading is fast).

    Returns:
        The path written (numpy appends ``.npz`` when missing).
    """
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{k: np.asarray(v) for k, v in truth.items()})
    return path


def load_truth(path: str | Path) -> dict[str, np.ndarray]:
    """Load a truth dict written by :func:`save_truth` (scalars come back as 0-d arrays)."""
    with np.load(Path(path), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
