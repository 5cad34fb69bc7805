"""Tests of graphrecall.graphs on tiny graphs whose answer is known by hand, plus a cross-check of
the sparse co-click build against an independent plain-pandas self-join reference.

Conventions checked here (design brief, section 2):

* sessions are per user, ``session_days`` buckets counted from the window's first click;
* ``N(i,j)`` counts distinct (user, session) pairs holding both i and j (repeat clicks count once);
* ``ordered``: (i, j) is counted in a session when the *first* click on j comes after the first
  click on i. Ties in time (both first clicked in the same second) are decided by content index:
  the lower index counts as the earlier one, so exactly one of (i, j), (j, i) is counted;
* a side-info view replaces every content of a session by its value(s) before counting, so a
  multi-valued content alone in a session (products {p1, p2}) already makes p1 and p2 co-occur.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from graphrecall.data.schema import build_dataset
from graphrecall.data.splits import encode_clicks
from graphrecall.graphs import cache as cache_mod
from graphrecall.graphs import coclick as coclick_mod
from graphrecall.graphs.cache import cache_key, cached
from graphrecall.graphs.coclick import (
    DAY_SECONDS,
    coclick_graph,
    cooccurrence_counts,
    csr_to_pyg,
    edge_weights,
    incidence_matrix,
    session_codes,
)
from graphrecall.graphs.views import build_group_graph, build_view_graph, content_sideinfo_edges, user_groups

T0 = 1_700_000_000  # a Unix time inside the validated 1990..2100 range
DAY = DAY_SECONDS
HOUR = 3_600


def make_dataset(clicks: list[tuple[str, str, int]], contents: pd.DataFrame | None = None, users=None):
    """FeedDataset from (user, content, timestamp) triples and an optional content table."""
    frame = pd.DataFrame(clicks, columns=["user_id", "content_id", "timestamp"])
    if contents is None:
        contents = pd.DataFrame({"content_id": sorted(frame["content_id"].unique())})
    side = {c: ("multi" if c in ("products", "categories") else "single") for c in contents.columns
            if c != "content_id"}
    return build_dataset("t", frame, contents, users, side, {})


def dense(m: sp.spmatrix) -> np.ndarray:
    return np.asarray(m.todense())


def assert_finite(*mats: sp.spmatrix) -> None:
    for m in mats:
        assert np.all(np.isfinite(m.data))


# --------------------------------------------------------------------------- worked example


def test_worked_example_from_the_brief():
    # sessions {A,B,C}, {A,B}, {B,C}; A=0, B=1, C=2
    session = np.array([0, 0, 0, 1, 1, 2, 2])
    item = np.array([0, 1, 2, 0, 1, 1, 2])
    kept, counts, stats = coclick_graph(session, item, 3, 3, tau=0.4)
    np.testing.assert_array_equal(dense(counts), [[0, 2, 1], [2, 0, 2], [1, 2, 0]])
    w_all = edge_weights(counts, "row")
    np.testing.assert_allclose(dense(w_all), [[0, 2 / 3, 1 / 3], [1 / 2, 0, 1 / 2], [1 / 3, 2 / 3, 0]])
    np.testing.assert_allclose(dense(kept), [[0, 2 / 3, 0], [1 / 2, 0, 1 / 2], [0, 2 / 3, 0]])
    rows, cols = kept.nonzero()
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(0, 1), (1, 0), (1, 2), (2, 1)]
    assert stats.edges_before_threshold == 6
    assert stats.edges_dropped_by_threshold == 2
    assert stats.edges_dropped_by_min_count == 0
    assert stats.edges_dropped_by_top_k == 0
    assert stats.edges == 4
    assert stats.nodes == 3 and stats.nodes_with_coclicks == 3
    assert stats.nodes_isolated_by_threshold == 0 and stats.nodes_without_coclicks == 0


def test_worked_example_through_build_view_graph():
    # the same three sessions, from user clicks: u1 days 0-1, u1 days 10-11 (next sessions), u2
    ds = make_dataset([
        ("u1", "A", T0), ("u1", "B", T0 + DAY), ("u1", "C", T0 + 2 * HOUR),
        ("u1", "A", T0 + 10 * DAY), ("u1", "B", T0 + 10 * DAY + HOUR),
        ("u2", "B", T0 + 5 * HOUR), ("u2", "C", T0 + 6 * HOUR),
    ])
    g = build_view_graph(encode_clicks(ds), ds, view="content", tau=0.4)
    assert list(g.row_vocab) == ["A", "B", "C"]
    np.testing.assert_array_equal(dense(g.counts), [[0, 2, 1], [2, 0, 2], [1, 2, 0]])
    np.testing.assert_allclose(dense(g.weights), [[0, 2 / 3, 0], [1 / 2, 0, 1 / 2], [0, 2 / 3, 0]])
    assert g.stats.edges_dropped_by_threshold == 2


# --------------------------------------------------------------------------- sessions


def test_session_buckets():
    users = np.array([0, 0, 0, 1])
    ts = np.array([T0, T0 + DAY, T0 + 4 * DAY, T0 + HOUR])
    codes, n = session_codes(users, ts, 3, origin=T0)
    assert n == 3
    assert codes[0] == codes[1]  # 1 day apart: one 3-day session
    assert codes[2] != codes[0]  # 4 days apart: two sessions
    assert codes[3] not in (codes[0], codes[2])  # another user never shares a session


def test_sessions_in_the_graph():
    ds = make_dataset([
        ("u1", "A", T0), ("u1", "B", T0 + DAY),          # same session: A-B
        ("u1", "C", T0 + 4 * DAY),                        # 4 days later: new session, no A-C
        ("u1", "A", T0 + HOUR), ("u1", "A", T0 + 2 * HOUR), ("u1", "B", T0 + 3 * HOUR),  # repeats
        ("u2", "C", T0 + HOUR), ("u3", "D", T0 + HOUR),   # same time, other users: no C-D
    ])
    g = build_view_graph(encode_clicks(ds), ds, tau=0.0)
    a, b, c, d = 0, 1, 2, 3
    assert g.counts[a, b] == 1 and g.counts[b, a] == 1  # repeat clicks in a session count once
    assert g.counts[a, c] == 0 and g.counts[c, d] == 0
    assert g.counts.nnz == 2
    assert g.stats.nodes_without_coclicks == 2  # C and D


def test_session_codes_with_origin_after_some_clicks_keep_users_apart():
    # an origin later than the first click gives negative buckets; they must not collide with
    # the buckets of another user
    users = np.array([0, 1])
    ts = np.array([T0 + 9 * DAY, T0 - DAY])  # user 0 bucket 3, user 1 bucket -1
    codes, n = session_codes(users, ts, 3, origin=T0)
    assert n == 2 and codes[0] != codes[1]


# --------------------------------------------------------------------------- pandas reference


def random_log(seed: int = 0, n: int = 400, users: int = 12, items: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    # integer-hour times so ties in time occur; a skewed item distribution gives ties and zeros
    p = rng.dirichlet(np.full(items, 0.3))
    return pd.DataFrame({
        "user_id": [f"u{x:02d}" for x in rng.integers(0, users, n)],
        "content_id": [f"c{x:02d}" for x in rng.choice(items, n, p=p)],
        "timestamp": T0 + rng.integers(0, 15 * 24, n) * HOUR,
    })


def reference_graph(clicks: pd.DataFrame, num_items: int, weighting: str, session_days: float = 3,
                    tau: float = 0.0, min_count: int = 1, top_k: int | None = None) -> np.ndarray:
    """Dense [I, I] weights by a plain pandas self-join (independent of graphrecall.graphs)."""
    df = clicks[["u", "i", "timestamp"]].copy()
    df["b"] = (df["timestamp"] - df["timestamp"].min()) // int(session_days * DAY)
    # first click of each (user, session, item)
    first = df.groupby(["u", "b", "i"], as_index=False)["timestamp"].min()
    pairs = first.merge(first, on=["u", "b"], suffixes=("_i", "_j"))
    pairs = pairs[pairs["i_i"] != pairs["i_j"]]
    if weighting == "ordered":
        later = (pairs["timestamp_j"] > pairs["timestamp_i"]) | (
            (pairs["timestamp_j"] == pairs["timestamp_i"]) & (pairs["i_j"] > pairs["i_i"]))
        pairs = pairs[later]
    n = pairs.groupby(["i_i", "i_j"]).apply(lambda g: len(g[["u", "b"]].drop_duplicates())).rename("n")
    n = n.reset_index()
    n_item = first.groupby("i")[["u", "b"]].apply(lambda g: len(g.drop_duplicates()))  # N(i)
    n_item = n_item.reindex(range(num_items), fill_value=0)
    if weighting in ("row", "ordered"):
        n["w"] = n["n"] / n.groupby("i_i")["n"].transform("sum")
    elif weighting == "confidence":
        n["w"] = n["n"] / n["i_i"].map(n_item)
    elif weighting == "cosine":
        n["w"] = n["n"] / np.sqrt(n["i_i"].map(n_item) * n["i_j"].map(n_item))
    n = n[(n["w"] > tau) & (n["n"] >= min_count)]
    if top_k is not None:
        n = n.sort_values(["i_i", "w", "i_j"], ascending=[True, False, True]).groupby("i_i").head(top_k)
    out = np.zeros((num_items, num_items))
    out[n["i_i"].to_numpy(), n["i_j"].to_numpy()] = n["w"].to_numpy()
    return out


@pytest.fixture(scope="module")
def random_dataset():
    log = random_log()
    contents = pd.DataFrame({"content_id": [f"c{x:02d}" for x in range(32)]})  # c30, c31 never clicked
    ds = make_dataset(list(log.itertuples(index=False, name=None)), contents)
    return ds, encode_clicks(ds)


@pytest.mark.parametrize(
    "weighting, tau, min_count, top_k",
    [
        ("row", 0.0, 1, None),
        ("row", 0.137, 1, None),
        ("row", 0.0, 2, None),
        ("row", 0.0, 1, 3),
        ("row", 0.05, 2, 2),
        ("confidence", 0.0, 1, None),
        ("confidence", 0.21, 1, None),
        ("cosine", 0.0, 1, None),
        ("cosine", 0.137, 2, None),
        ("ordered", 0.0, 1, None),
        ("ordered", 0.137, 1, None),
    ],
)
def test_matches_pandas_reference(random_dataset, weighting, tau, min_count, top_k):
    ds, clicks = random_dataset
    g = build_view_graph(clicks, ds, weighting=weighting, tau=tau, min_count=min_count, top_k=top_k)
    ref = reference_graph(clicks, ds.num_contents, weighting, tau=tau, min_count=min_count, top_k=top_k)
    got = dense(g.weights)
    np.testing.assert_array_equal(got != 0, ref != 0)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=0)
    assert g.stats.edges == int((ref != 0).sum())
    assert g.stats.nodes_without_coclicks >= 2  # the never-clicked c30, c31
    if top_k is not None:
        assert np.diff(g.weights.indptr).max() <= top_k


def test_reference_cases_are_not_trivial(random_dataset):
    ds, clicks = random_dataset
    ref = reference_graph(clicks, ds.num_contents, "row")
    assert (ref != 0).sum() > 100
    # the top-k case contains rows with tied weights at the cut, so the tie-break is exercised
    row_cut_ties = 0
    for r in ref:
        w = np.sort(r[r > 0])[::-1]
        row_cut_ties += len(w) > 3 and w[2] == w[3]
    assert row_cut_ties > 0
    # and the ordered case contains same-second first clicks in one session
    s = clicks.assign(b=(clicks["timestamp"] - clicks["timestamp"].min()) // (3 * DAY))
    first = s.groupby(["u", "b", "i"])["timestamp"].min().reset_index()
    assert first.duplicated(["u", "b", "timestamp"]).any()


@pytest.mark.parametrize("num_threads", [1, 2, 3])
def test_blocked_threaded_counts_equal_plain_product(monkeypatch, num_threads):
    monkeypatch.setattr(coclick_mod, "_MIN_NNZ_FOR_THREADS", 0)  # use the blocked path on small input
    rng = np.random.default_rng(1)
    session = rng.integers(0, 400, 3_000)
    item = rng.choice(250, 3_000, p=rng.dirichlet(np.full(250, 0.2)))  # some items never clicked
    b = incidence_matrix(session, item, 400, 260)
    ref = (b.T @ b).astype(np.int64).toarray()
    np.fill_diagonal(ref, 0)
    got = cooccurrence_counts(b, num_threads=num_threads)
    assert got.dtype == np.int64 and np.all(got.data > 0)  # no stored zeros (diagonal removed)
    np.testing.assert_array_equal(got.toarray(), ref)
    assert (np.diff(got.indptr)[250:] == 0).all()


def test_top_k_tie_break_lower_column_first():
    # item 0 co-clicked once with each of 1, 2, 3: equal weights, top-2 keeps columns 1 and 2
    kept, _, stats = coclick_graph(np.zeros(4, int), np.array([3, 0, 2, 1]), 1, 4, top_k=2)
    assert kept[0].indices.tolist() == [1, 2]
    assert stats.edges_dropped_by_top_k == 4  # rows 0..3 have 3 neighbours, keep 2 each


def test_min_count_is_counted_separately_from_threshold():
    # sessions {0,1}, {0,1}, {0,2}: N(0,1)=2, N(0,2)=1
    kept, _, stats = coclick_graph(np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 0, 1, 0, 2]), 3, 3,
                                   tau=0.5, min_count=2)
    # edges 0->1 (2/3), 1->0 (1), 0->2 (1/3: min_count and tau), 2->0 (1: min_count)
    assert stats.edges_dropped_by_min_count == 2
    assert stats.edges_dropped_by_threshold == 0  # only counted when it passes min_count
    assert sorted(zip(*kept.nonzero())) == [(0, 1), (1, 0)]
    assert stats.nodes_isolated_by_threshold == 1  # node 2


# --------------------------------------------------------------------------- isolated nodes


@pytest.mark.parametrize("weighting", ["row", "confidence", "cosine", "ordered"])
def test_isolated_nodes_counted_and_no_nan(weighting):
    # A=0 B=1 C=2 D=3; E=4 never clicked; F=5 only alone in a session
    # sessions {A,B,C,D}, {B,C}, {B,C}, {F}: A and D have co-clicks with weights 1/3 only
    session = np.array([0, 0, 0, 0, 1, 1, 2, 2, 3])
    item = np.array([0, 1, 2, 3, 1, 2, 2, 1, 5])
    ts = np.arange(len(item))
    kept, counts, stats = coclick_graph(session, item, 4, 6, tau=0.4, weighting=weighting, timestamps=ts)
    assert_finite(kept, counts)
    # stats count out-edges: with ``ordered`` D (clicked last in its only session) has none
    expected_without = 3 if weighting == "ordered" else 2  # E, F (+ D)
    assert stats.nodes_without_coclicks == expected_without
    assert stats.nodes_with_coclicks == 6 - expected_without
    if weighting == "row":
        assert stats.nodes_isolated_by_threshold == 2  # A, D
        assert dense(kept)[1, 2] == pytest.approx(0.6) and dense(kept)[2, 1] == pytest.approx(0.6)
    deg_after = np.diff(kept.indptr)
    assert stats.nodes_isolated_by_threshold == int(((np.diff(counts.indptr) > 0) & (deg_after == 0)).sum())
    data = csr_to_pyg(kept, counts)
    assert data.num_nodes == 6 and np.isfinite(data.edge_weight.numpy()).all()
    # the full weight matrix (rows of zero sum included) has no NaN either
    n_item = np.asarray(incidence_matrix(session, item, 4, 6).sum(axis=0)).ravel()
    assert_finite(edge_weights(counts, weighting, n_item))


def test_all_edges_thresholded_away():
    kept, counts, stats = coclick_graph(np.array([0, 0]), np.array([0, 1]), 1, 3, tau=1.0)
    assert kept.nnz == 0 and stats.edges == 0 and stats.nodes_isolated_by_threshold == 2
    data = csr_to_pyg(kept, counts)
    assert tuple(data.edge_index.shape) == (2, 0) and data.edge_count.numel() == 0


# --------------------------------------------------------------------------- side-info views


@pytest.fixture()
def view_dataset():
    contents = pd.DataFrame({
        "content_id": ["c1", "c2", "c3", "c4", "c5"],
        "style": ["s1", "s2", "s1", "s3", None],
        "products": [["p1", "p2"], ["p3"], ["p3"], ["p4"], []],
    })
    clicks = [
        ("u1", "c1", T0), ("u1", "c2", T0 + HOUR),                      # session {c1, c2}
        ("u2", "c1", T0),                                                # session {c1} alone
        ("u2", "c3", T0 + 5 * DAY), ("u2", "c1", T0 + 5 * DAY + HOUR),  # session {c3, c1}
    ]
    return make_dataset(clicks, contents)


def at(g, a, b, which="weights"):
    rv, cv = list(g.row_vocab), list(g.col_vocab)
    return getattr(g, which)[rv.index(a), cv.index(b)]


def test_style_view(view_dataset):
    ds = view_dataset
    g = build_view_graph(encode_clicks(ds), ds, view="style")
    assert sorted(g.row_vocab) == ["<unknown>", "s1", "s2", "s3"]
    # session {c1, c2} has styles {s1, s2}; session {c3, c1} has only s1 (no self edge)
    assert at(g, "s1", "s2", "counts") == 1 and at(g, "s2", "s1", "counts") == 1
    assert g.counts.nnz == 2
    assert at(g, "s1", "s2") == 1.0 and at(g, "s2", "s1") == 1.0
    assert g.stats.nodes_without_coclicks == 2  # s3 (c4 never clicked) and <unknown>


def test_multi_valued_view_replaces_each_content_by_its_values(view_dataset):
    ds = view_dataset
    clicks = encode_clicks(ds)
    # the intended semantics: a session becomes the set of values of its contents, so c1 alone
    # (products {p1, p2}) already makes p1 and p2 co-occur
    alone = clicks[clicks["user_id"].eq("u2") & clicks["timestamp"].eq(T0)]
    g1 = build_view_graph(alone, ds, view="products")
    assert g1.counts.nnz == 2 and at(g1, "p1", "p2", "counts") == 1 and at(g1, "p2", "p1", "counts") == 1
    # all three sessions: {p1,p2,p3}, {p1,p2}, {p1,p2,p3}
    g = build_view_graph(clicks, ds, view="products")
    assert list(g.row_vocab) == ["p1", "p2", "p3", "p4"]
    np.testing.assert_array_equal(dense(g.counts), [[0, 3, 2, 0], [3, 0, 2, 0], [2, 2, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_allclose(dense(g.weights), [[0, .6, .4, 0], [.6, 0, .4, 0], [.5, .5, 0, 0], [0, 0, 0, 0]])
    g_tau = build_view_graph(clicks, ds, view="products", tau=0.45)
    assert g_tau.stats.edges == 4 and g_tau.stats.edges_dropped_by_threshold == 2


def test_unknown_view_and_ordered_view_raise(view_dataset):
    ds = view_dataset
    with pytest.raises(ValueError, match="unknown graph view 'colour'"):
        build_view_graph(encode_clicks(ds), ds, view="colour")
    with pytest.raises(ValueError, match="ordered"):
        build_view_graph(encode_clicks(ds), ds, view="style", weighting="ordered")


def test_content_sideinfo_edges(view_dataset):
    g = content_sideinfo_edges(view_dataset, "products")
    assert list(g.row_vocab) == ["c1", "c2", "c3", "c4", "c5"]
    assert list(g.col_vocab) == ["p1", "p2", "p3", "p4"]
    np.testing.assert_allclose(dense(g.weights), [[.5, .5, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0], [0, 0, 0, 1],
                                                  [0, 0, 0, 0]])
    assert g.counts.dtype == np.int64 and g.counts.sum() == 5
    assert g.stats.edges == 5 and g.stats.nodes == 9
    assert g.stats.nodes_without_coclicks == 1  # c5 has no product
    assert_finite(g.weights)
    s = content_sideinfo_edges(view_dataset, "style")
    assert list(s.col_vocab) == ["<unknown>", "s1", "s2", "s3"]
    assert s.weights.sum() == 5 and s.stats.nodes_without_coclicks == 0


# --------------------------------------------------------------------------- user groups


def test_user_groups_bins_and_missing_values():
    users = pd.DataFrame({
        "user_id": ["a", "b", "c", "d", "e"],
        "gender": ["f", "m", None, "f", "f"],
        "age": [20, 40, 25, np.nan, 22],
    })
    codes, vocab = user_groups(users, ["gender", "age"], bins={"age": [0, 30, 100]})
    keys = vocab[codes].tolist()
    assert keys == ["f|[0, 30)", "m|[30, 100)", "<na>|[0, 30)", "f|<na>", "f|[0, 30)"]
    assert len(vocab) == 4 and codes[0] == codes[4]
    codes1, vocab1 = user_groups(users, ["gender"])
    assert vocab1[codes1].tolist() == ["f", "m", "<na>", "f", "f"]
    codes0, vocab0 = user_groups(users, [])
    assert vocab0.tolist() == ["all"] and (codes0 == 0).all()
    with pytest.raises(ValueError, match=r"\['city'\] are not columns"):
        user_groups(users, ["gender", "city"])


def test_group_graph_weights_by_hand():
    users = pd.DataFrame({"user_id": ["u1", "u2", "u3", "u4"], "g": ["x", "x", "y", "z"]})
    ds = make_dataset([("u1", "c1", T0), ("u1", "c1", T0 + HOUR), ("u1", "c2", T0 + 2 * HOUR),
                       ("u2", "c1", T0 + 3 * HOUR), ("u3", "c3", T0 + 4 * HOUR)], users=users)
    codes, vocab = user_groups(ds.users, ["g"])
    g = build_group_graph(encode_clicks(ds), ds, codes, vocab, tau=0.3)
    # C(x, c1) = 3 clicks, C(x, c2) = 1, C(y, c3) = 1; group z has no click
    assert list(g.row_vocab) == ["x", "y", "z"] and list(g.col_vocab) == ["c1", "c2", "c3"]
    np.testing.assert_array_equal(dense(g.counts), [[3, 1, 0], [0, 0, 1], [0, 0, 0]])
    np.testing.assert_allclose(dense(g.weights), [[.75, 0, 0], [0, 0, 1], [0, 0, 0]])
    assert g.stats.edges == 2 and g.stats.edges_dropped_by_threshold == 1
    assert g.stats.nodes_without_coclicks == 1  # group z
    assert_finite(g.weights, g.counts)


# --------------------------------------------------------------------------- PyG conversion


def test_csr_to_pyg_agrees_with_csr(random_dataset):
    ds, clicks = random_dataset
    g = build_view_graph(clicks, ds, tau=0.05)
    data = csr_to_pyg(g.weights, g.counts)
    src, dst = data.edge_index.numpy()
    assert data.edge_index.dtype.is_floating_point is False and data.num_nodes == ds.num_contents
    assert len(src) == g.weights.nnz
    w = dense(g.weights)
    np.testing.assert_allclose(data.edge_weight.numpy(), w[src, dst].astype(np.float32))
    np.testing.assert_array_equal(data.edge_count.numpy(), dense(g.counts)[src, dst])
    rebuilt = sp.csr_matrix((data.edge_weight.numpy(), (src, dst)), shape=w.shape)
    np.testing.assert_allclose(dense(rebuilt), w, rtol=1e-6)
    assert not hasattr(csr_to_pyg(g.weights), "edge_count") or csr_to_pyg(g.weights).edge_count is None


# --------------------------------------------------------------------------- cache


def test_cache_builds_once_per_key(tmp_path):
    calls = []

    def build(x):
        calls.append(x)
        return {"x": x, "m": sp.identity(3, format="csr")}

    first = cached(tmp_path, "g", {"a": 1}, lambda: build(1))
    second = cached(tmp_path, "g", {"a": 1}, lambda: build(1))
    assert calls == [1] and second["x"] == 1 and (second["m"] != first["m"]).nnz == 0
    cached(tmp_path, "g", {"a": 2}, lambda: build(2))
    assert calls == [1, 2]
    assert cache_key({"a": 1}) != cache_key({"a": 2})
    assert cache_key({"a": 1, "b": 2}) == cache_key({"b": 2, "a": 1})
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and all(f.endswith(".npz") for f in files)
    assert not list(tmp_path.glob("*.tmp*"))


def test_cache_disabled(tmp_path):
    calls = []
    for _ in range(2):
        cached(None, "g", {"a": 1}, lambda: calls.append(1) or 5)
    assert calls == [1, 1]


def test_cache_write_is_atomic(tmp_path, monkeypatch):
    def broken_dump(f, *args, **kwargs):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(cache_mod.np, "savez", broken_dump)
    with pytest.raises(OSError, match="disk full"):
        cached(tmp_path, "g", {"a": 1}, lambda: 5)
    assert list(tmp_path.iterdir()) == []  # neither a partial entry nor a temporary file
    monkeypatch.undo()
    calls = []
    assert cached(tmp_path, "g", {"a": 1}, lambda: calls.append(1) or 5) == 5 and calls == [1]


def _plant_marker(path: str) -> None:
    """What a crafted cache entry would run if it were unpickled."""
    with open(path, "w") as f:
        f.write("code ran")


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (_plant_marker, (self.marker,))


def _style_dataset(styles: list[str]):
    contents = pd.DataFrame({"content_id": ["a", "b", "c"], "style": styles})
    return make_dataset([("u1", "a", T0), ("u1", "b", T0 + 60), ("u1", "c", T0 + 120), ("u2", "a", T0)], contents)


def test_cache_stores_a_graph_as_npz_and_restores_it_exactly(tmp_path):
    ds = _style_dataset(["x", "y", "x"])
    clicks = encode_clicks(ds)
    parts = {**cache_mod.graph_inputs(clicks, ds, "style"), "view": "style"}
    built = build_view_graph(clicks, ds, view="style")
    again = cached(tmp_path, "view-style", parts, lambda: built)
    hit = cached(tmp_path, "view-style", parts, lambda: pytest.fail("a valid entry must be reused"))
    assert type(hit) is type(built) and hit.stats == built.stats and hit.name == built.name
    assert (hit.weights != again.weights).nnz == 0 and (hit.counts != built.counts).nnz == 0
    assert list(hit.row_vocab) == list(built.row_vocab) and list(hit.col_vocab) == list(built.col_vocab)
    (entry,) = tmp_path.glob("*.npz")
    with np.load(entry, allow_pickle=False) as z:  # readable without pickle
        assert "__meta__" in z.files


def test_cache_key_covers_the_content_to_value_mapping():
    ds_a, ds_b = _style_dataset(["x", "y", "x"]), _style_dataset(["x", "y", "y"])  # c relabelled
    clicks_a, clicks_b = encode_clicks(ds_a), encode_clicks(ds_b)
    key = lambda ds, c, view: cache_key(cache_mod.graph_inputs(c, ds, view))  # noqa: E731
    assert key(ds_a, clicks_a, "style") != key(ds_b, clicks_b, "style")
    assert key(ds_a, clicks_a, "content") == key(ds_b, clicks_b, "content")  # content graph ignores styles


def test_crafted_cache_entry_does_not_run_code(tmp_path, caplog):
    marker = tmp_path / "marker"
    parts = {"a": 1}
    path = tmp_path / f"g-{cache_key(parts)}.npz"
    payload = np.empty(1, dtype=object)
    payload[0] = _Payload(str(marker))
    np.savez(path, __meta__=payload, a0=payload)  # an object array: only readable by unpickling
    with caplog.at_level("WARNING", logger="graphrecall.graphs.cache"):
        assert cached(tmp_path, "g", parts, lambda: {"x": 7}) == {"x": 7}
    assert not marker.exists()
    assert "unusable" in caplog.text and "rebuilding" in caplog.text
    assert cached(tmp_path, "g", parts, lambda: pytest.fail("the rebuilt entry must be reused")) == {"x": 7}


def test_damaged_cache_entry_is_rebuilt(tmp_path, caplog):
    parts = {"a": 1}
    good = {"m": sp.csr_matrix(np.eye(3)), "n": 5}
    cached(tmp_path, "g", parts, lambda: good)
    (path,) = tmp_path.glob("*.npz")
    # 1) an entry that still loads but whose numbers changed: the checksum catches it
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k].copy() for k in z.files}
    data_key = next(k for k in arrays if k != "__meta__" and arrays[k].dtype.kind == "f")
    arrays[data_key][0] = 42.0
    np.savez(path.with_suffix(""), **arrays)  # np.savez appends .npz
    calls = []
    with caplog.at_level("WARNING", logger="graphrecall.graphs.cache"):
        out = cached(tmp_path, "g", parts, lambda: calls.append(1) or good)
    assert calls == [1] and out["m"][0, 0] == 1.0 and "checksum" in caplog.text
    # 2) a truncated entry: rebuilt, not a crash
    path.write_bytes(path.read_bytes()[:50])
    caplog.clear()
    with caplog.at_level("WARNING", logger="graphrecall.graphs.cache"):
        out = cached(tmp_path, "g", parts, lambda: calls.append(2) or good)
    assert calls == [1, 2] and out["n"] == 5 and "rebuilding" in caplog.text
    # 3) an entry filed under this key but built from other inputs
    other = {"a": 2}
    cache_mod.write_entry(path, other, {"n": 6})
    assert cached(tmp_path, "g", parts, lambda: calls.append(3) or good)["n"] == 5 and calls == [1, 2, 3]
