"""M2GRL stage-2 pieces: the GNN view encoder and the diversity recall (hand-computed cases)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from graphrecall.graphs.sampling import top_k_graph
from graphrecall.models.m2grl import M2GRLModule, M2GRLRecall
from graphrecall.recall.diversity import (
    diversity_shares,
    merge_pools,
    merge_row,
    nearest_values,
    source_slots,
    value_rankings,
    view_candidates,
)
from graphrecall.recall.pool import CandidatePool

# ---------------------------------------------------------------- quotas and the merge


@pytest.mark.parametrize("size, quota, views, expected", [
    (10, 0.2, 2, [8, 1, 1]),   # exact
    (10, 0.25, 2, [8, 1, 1]),  # 7.5, 1.25, 1.25: floors 7, 1, 1; the one left goes to the largest remainder
    (7, 0.3, 2, [5, 1, 1]),    # 4.9, 1.05, 1.05
    (10, 0.5, 3, [5, 2, 2, 1]),  # 5, 1.67 x 3: floors 5, 1, 1, 1; two left, tie of remainders -> earlier views
    (10, 0.0, 2, [10, 0, 0]),
])
def test_source_slots_round_by_largest_remainder(size, quota, views, expected):
    slots = source_slots(size, diversity_shares(views, quota))
    assert slots.tolist() == expected and slots.sum() == size


def test_bad_quota_and_empty_views_name_the_config_key():
    with pytest.raises(ValueError, match="model.diversity.quota"):
        diversity_shares(2, 1.5)
    with pytest.raises(ValueError, match="model.diversity.views"):
        diversity_shares(0, 0.2)


def test_merge_row_quota_dedup_give_back_and_interleave():
    # size 8, quota 0.5 over two views: slots 4 / 2 / 2
    content = np.array([5, 0, 1, 2, 3, 4, 6])  # 0 is the trigger itself
    style = np.array([1, 7, 8])                # 1 is already taken by the content pool
    space = np.array([9, -1, 10])              # one candidate only (-1 ends the list): gives a slot back
    m = merge_row([content, style, space], source_slots(8, diversity_shares(2, 0.5)), exclude=0)
    # pass 0: content 5,1,2,3 | style 7,8 (1 skipped) | space 9; pass 1: the free slot -> content 4
    # interleave keys: content (j+.5)/5 = .1 .3 .5 .7 .9, style (j+.5)/2 = .25 .75, space .5
    assert m.items.tolist() == [5, 7, 1, 2, 9, 3, 8, 4]
    assert m.source.tolist() == [0, 1, 0, 0, 2, 0, 1, 0]
    assert m.taken.tolist() == [5, 2, 1]
    assert m.given_back.tolist() == [0, 0, 1]
    assert m.duplicates == 1


def test_merge_pools_counts_carries_scores_and_quota_zero_is_the_content_pool():
    content = CandidatePool(np.array([[1, 2, 3, 4], [0, 2, 3, 4]]),
                            np.array([[.9, .8, .7, .6], [.5, .4, .3, .2]], dtype=np.float32))
    style = CandidatePool(np.array([[3, 4, -1, -1], [-1, -1, -1, -1]]),  # row 1: no style candidate at all
                          np.array([[10., 20., np.nan, np.nan], [np.nan] * 4], dtype=np.float32))
    merged = merge_pools({"content": content, "style": style}, quota=0.5)  # slots 2 / 2
    # row 0: content 1, 2 (keys .25 .75), style 3, 4 (keys .25 .75)
    assert merged.pool.neighbors[0].tolist() == [1, 3, 2, 4]
    assert merged.pool.scores[0].tolist() == pytest.approx([.9, 10., .8, 20.])
    assert merged.source[0].tolist() == [0, 1, 0, 1]
    # row 1: style gives both slots back; the content pool fills the row
    assert merged.pool.neighbors[1].tolist() == [0, 2, 3, 4]
    assert merged.stats == {"taken/content": 6, "taken/style": 2, "given_back/content": 0, "given_back/style": 2,
                            "duplicates": 0, "short_rows": 0}
    off = merge_pools({"content": content, "style": style}, quota=0.0)
    assert np.array_equal(off.pool.neighbors, content.neighbors)
    assert np.allclose(off.pool.scores, content.scores)


# ---------------------------------------------------------------- view candidates


def test_nearest_values_by_cosine_exclude_own_values():
    vectors = np.array([[1.0, 0.0], [2.0, 0.2], [0.0, 1.0], [-1.0, 0.0]])
    bags = sp.csr_matrix(np.array([[1, 0, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]))
    values, cos = nearest_values(vectors, bags, k=2)
    # content 0: query (1, 0): cos v1 = 1/sqrt(1.01), v2 = 0, v3 = -1 (v0 is its own)
    assert values[0].tolist() == [1, 2]
    assert cos[0].tolist() == pytest.approx([1 / math.sqrt(1.01), 0.0], abs=1e-6)
    # content 1 (values 0 and 2): query (1, 1)/sqrt(2): v1 = 1.1/sqrt(2.02), v3 = -1/sqrt(2)
    assert values[1].tolist() == [1, 3]
    assert cos[1].tolist() == pytest.approx([1.1 / math.sqrt(2.02), -1 / math.sqrt(2)], abs=1e-6)
    assert values[2].tolist() == [-1, -1] and np.isnan(cos[2]).all()  # no value: no neighbour


def test_value_rankings_and_round_robin_candidates():
    # contents x values: c0 {0}, c1 {0, 1}, c2 {1}, c3 {0}; popularity 3, 5, 1, 5
    bags = sp.csr_matrix(np.array([[1, 0], [1, 1], [0, 1], [1, 0]]))
    pop = np.array([3.0, 5.0, 1.0, 5.0])
    rows = np.repeat(np.arange(4), np.diff(bags.indptr))
    ranked, scores = value_rankings(bags, pop[rows], depth=2)
    assert ranked.tolist() == [[1, 3], [1, 2]]  # value 0: c1 and c3 tie at 5 (lower row first), c0 cut
    assert scores.tolist() == [[5.0, 5.0], [5.0, 1.0]]
    nearest = np.array([[1, 0], [0, -1]])
    pool = view_candidates(nearest, ranked, scores, size=3)
    # content 0: round 1 -> v1: c1, v0: c1 (duplicate); round 2 -> v1: c2, v0: c3
    assert pool.neighbors.tolist() == [[1, 2, 3], [1, 3, -1]]
    assert pool.scores[0].tolist() == [5.0, 1.0, 5.0]
    with pytest.raises(ValueError, match="entry_scores"):
        value_rankings(bags, pop, depth=2)


def test_unknown_diversity_view_names_the_config_key():
    data = SimpleNamespace(name="toy", side_info={"genres": "multi", "decade": "single"},
                           diversity_fields={"style": "genres", "space": "decade"})
    model = M2GRLRecall(graph={}, triggers={}, encoder={}, aggregator={}, loss={}, sampling={}, optim={}, trainer={},
                        diversity={"views": ["style", "space"]})
    assert model.diversity_views(data) == {"style": "genres", "space": "decade"}
    model.alignment["views"] = ["style", "decade"]  # a role and a field
    assert model.alignment_views(data) == ["genres", "decade"]
    model.alignment["views"] = ["colour"]
    with pytest.raises(ValueError, match="model.alignment.views: 'colour'"):
        model.alignment_views(data)
    model.alignment["views"] = None
    assert model.alignment_views(data) is None
    model.diversity["views"] = ["style", "colour"]
    with pytest.raises(ValueError, match="model.diversity.views: 'colour'"):
        model.diversity_views(data)
    with pytest.raises(ValueError, match="model.view_encoder"):
        M2GRLRecall(graph={}, triggers={}, encoder={}, aggregator={}, loss={}, sampling={}, optim={}, trainer={},
                    view_encoder="word2vec")
    with pytest.raises(ValueError, match="model.diversity.rank_by"):
        M2GRLRecall(graph={}, triggers={}, encoder={}, aggregator={}, loss={}, sampling={}, optim={}, trainer={},
                    diversity={"rank_by": "random"})


# ---------------------------------------------------------------- GNN view encoder


def _module(view_encoder: str, aggregator: str = "mean", **kwargs) -> M2GRLModule:
    encoder = {"field_sizes": {"style": 4, "space": 3}, "field_dim": 4, "hidden_dim": 6, "num_layers": 2,
               "aggregator": aggregator, "heads": 2, "num_nodes": 5, "dropout": 0.0, "normalize": False}
    return M2GRLModule(encoder, views={"style": 4, "space": 3}, relation_dim=3, view_encoder=view_encoder, **kwargs)


@pytest.mark.parametrize("aggregator", ["mean", "sum", "gat"])
def test_gnn_view_encoder_gives_finite_vectors_per_value(aggregator):
    torch.manual_seed(0)
    module = _module("gnn", aggregator)
    # style: values 0-1-2 co-clicked, value 3 has no neighbour; space: no edge at all
    style = top_k_graph(sp.csr_matrix(np.array([[0, .6, .4, 0], [.5, 0, .5, 0], [1., 0, 0, 0], [0, 0, 0, 0.]])), 2)
    space = top_k_graph(sp.csr_matrix((3, 3)), 2)
    module.attach_views({"style": style, "space": space})
    h = module.view_matrix("style")
    assert h.shape == (4, 6) and torch.isfinite(h).all()
    assert module.view_matrix("space").shape == (3, 6)
    # the isolated value keeps its own (self-term) vector: changing another value's id embedding moves
    # the co-clicked values but not value 3 (mean / sum; GAT's self-loop-only node as well)
    emb = module.view_encoders["style"].features.node_embedding.weight
    with torch.no_grad():
        before = module.view_matrix("style").clone()
        emb[1] += 1.0
        after = module.view_matrix("style")
    assert torch.allclose(before[3], after[3]) and not torch.allclose(before[0], after[0])
    # the intra-view pair task trains this view's encoder only (separate parameters per view)
    gen = torch.Generator().manual_seed(0)
    loss = module._view_task("style", module.view_matrix("style"), gen)
    assert torch.isfinite(loss)
    loss.backward()
    assert module.view_encoders["style"].features.node_embedding.weight.grad.abs().sum() > 0
    assert module.view_encoders["space"].features.node_embedding.weight.grad is None
    assert module._view_task("space", module.view_matrix("space"), gen) is None  # no edge: task absent
    vectors = module.view_vectors()
    assert vectors["style"].shape == (4, 6) and np.isfinite(vectors["style"]).all()


def test_sgns_view_matrix_is_the_table_and_gnn_needs_its_graph():
    module = _module("sgns")
    assert module.view_matrix("style") is module.view_tables["style"].weight
    with pytest.raises(RuntimeError, match="attach_views"):
        _module("gnn").view_matrix("style")
    with pytest.raises(ValueError, match="model.view_encoder"):
        _module("skipgram")


def test_m2grl_gnn_views_with_diversity_end_to_end(tmp_path):
    import sys

    from tests.conftest import ROOT, TINY, compose_train

    sys.path.insert(0, str(ROOT))
    import train as train_app

    cfg = compose_train(tmp_path, [*TINY, "model=m2grl", "model.view_encoder=gnn", "model.diversity.enabled=true",
                                   "trainer.max_epochs=1", "trainer.enable_progress_bar=false"])
    metrics, objects = train_app.train(cfg)
    model = objects["model"]
    assert set(model.module.view_encoders) == {"style", "space", "designer", "products", "categories"}
    for view in ("style", "products"):
        vectors = np.load(tmp_path / "run" / f"view_vectors_{view}.npy")
        assert vectors.shape == (model.module.view_encoders[view].features.node_embedding.num_embeddings, 64)
        assert np.isfinite(vectors).all()
    # 200 contents, pool 100, quota 0.2 over style and space: 80 / 10 / 10 slots per content; every
    # row is full, and a view's slots are either taken by it or given back
    for fold in ("val", "test"):
        taken = {s: metrics[f"{fold}/fit/diversity/taken/{s}"] for s in ("content", "style", "space")}
        assert sum(taken.values()) == 200 * 100 and metrics[f"{fold}/fit/diversity/short_rows"] == 0
        for view in ("style", "space"):
            assert taken[view] + metrics[f"{fold}/fit/diversity/given_back/{view}"] == 200 * 10
            assert metrics[f"{fold}/fit/diversity/share/{view}"] == pytest.approx(taken[view] / (200 * 100))
    assert metrics["test/fit/diversity/share/style"] == pytest.approx(0.1, abs=0.02)
    assert 0.0 <= metrics["test/recall@50"] <= 1.0 and np.isfinite(metrics["test/distinct_style_clicked@50"])


def test_graph_multi_sets_the_views(tmp_path):
    from hydra.utils import instantiate

    from tests.conftest import compose_train

    cfg = compose_train(tmp_path, ["model=m2grl", "graph=multi", "graph.views=[style,space]"])
    assert list(cfg.model.views) == ["style", "space"] and cfg.model.graph.view == "content"
    assert instantiate(cfg.model, _convert_="all").views == ["style", "space"]
    assert compose_train(tmp_path, ["model=m2grl"]).model.views is None  # graph=content: every side-info field


# ---------------------------------------------------------------- issue 14: the fixes


def test_similarity_candidates_rank_each_values_contents_by_cosine_to_the_query():
    # contents x values: c0 {0}, c1 {1}, c2 {1}, c3 {2}, c4 {1}
    bags = sp.csr_matrix(np.array([[1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1], [0, 1, 0]]))
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [1.0, 1.0], [-1.0, 0.0]])
    nearest = np.array([[1, 2], [2, -1], [-1, -1], [1, -1], [2, 0]])
    from graphrecall.recall.diversity import similar_view_candidates

    pool = similar_view_candidates(nearest, bags, vectors, size=3)
    # c0 = (1, 0): value 1 holds c1 (cos 0), c2 (0.995), c4 (-1) -> c2, c1, c4; value 2: c3 (0.707)
    # round-robin: c2 (v1), c3 (v2), c1 (v1)
    assert pool.neighbors[0].tolist() == [2, 3, 1]
    assert pool.scores[0].tolist() == pytest.approx([1 / math.sqrt(1.01), 1 / math.sqrt(2), 0.0], abs=1e-6)
    assert pool.neighbors[2].tolist() == [-1, -1, -1]
    # c3 = (1, 1) on value 1: c2 (1.1 / sqrt(2.02)) > c1 (0.707) > c4 (-0.707); a query's own row is never a candidate
    assert pool.neighbors[3].tolist() == [2, 1, 4]
    assert 1 not in pool.neighbors[1].tolist()


def test_bad_alignment_and_intra_settings_name_the_config_key():
    with pytest.raises(ValueError, match=r"model.alignment.views \['colour'\]"):
        _module("sgns", alignment={"views": ["colour"]})
    with pytest.raises(ValueError, match="model.alignment: unknown keys"):
        _module("sgns", alignment={"detached": True})
    with pytest.raises(ValueError, match="model.intra.small_views"):
        _module("sgns", intra={"small_views": "glove"})
    with pytest.raises(ValueError, match="model.alignment.score"):
        _module("sgns", alignment={"score": "dot"})
    # min_values: style (4 values) and space (3) below 4 -> space only gets the small-view task
    module = _module("sgns", intra={"min_values": 4, "small_views": "none"}, alignment={"views": ["style"]})
    assert module.intra_kinds == {"style": "sgns", "space": "none"}
    assert module.weighting.tasks == ["intra/content", "intra/style", "inter/style"]
    ramped = _module("sgns", alignment={"weight": 0.5, "ramp_epochs": 2})
    assert ramped.task_scales(1) == {"inter/style": 0.25, "inter/space": 0.25}
    assert ramped.task_scales(5) == {"inter/style": 0.5, "inter/space": 0.5}


def test_m2grl_fit_with_a_chosen_view_list_and_every_fix(tmp_path):
    import sys

    import pandas as pd

    from tests.conftest import ROOT, TINY, compose_train

    sys.path.insert(0, str(ROOT))
    import train as train_app

    cfg = compose_train(tmp_path, [
        *TINY, "model=m2grl", "graph=multi", "graph.views=[style,space,categories]", "trainer.max_epochs=2",
        "trainer.enable_progress_bar=false", "trainer.early_stopping_patience=0",
        "model.alignment.views=[style,categories]", "model.alignment.score=cosine", "model.alignment.detach=true",
        "model.alignment.weight=0.5", "model.alignment.ramp_epochs=2", "model.alignment.exclude_own=true",
        "model.intra.output_table=true", "model.intra.exclude_neighbors=true", "model.intra.min_values=16",
        "model.intra.small_views=pmi", "model.weighting_lr=0.05",
        "model.diversity.enabled=true", "model.diversity.rank_by=similarity"])
    metrics, objects = train_app.train(cfg)
    module = objects["model"].module
    # style (12 values) and space (8) are below 16: PMI target; categories (30): skip-gram
    assert module.intra_kinds == {"style": "pmi", "space": "pmi", "categories": "sgns"}
    assert metrics["val/fit/intra_task/style/pmi"] == 1 and metrics["val/fit/intra_task/categories/sgns"] == 1
    assert set(module.weighting.tasks) == {"intra/content", "intra/style", "intra/space", "intra/categories",
                                           "inter/style", "inter/categories"}
    log = pd.read_csv(tmp_path / "run" / "csv" / "metrics.csv")
    per_epoch = log.dropna(subset=["train/alignment_scale"])
    # ramp: 0 at epoch 0, 0.25 at epoch 1 (cap 0.5 after 2 epochs); the logged weight includes it
    assert per_epoch["train/alignment_scale"].tolist()[:2] == [0.0, 0.25]
    assert per_epoch["train/task_weight/inter/style"].iloc[0] == 0.0
    assert per_epoch["train/task_weight/inter/style"].iloc[1] > 0
    # exact negatives: nothing masked on categories (30 values, top-10 neighbours) or in the alignment
    assert per_epoch["train/negatives_masked/intra/categories"].max() == 0.0
    assert per_epoch["train/negatives_masked/inter/style"].max() == 0.0
    assert np.isfinite(per_epoch["train/task_loss/intra/style"]).all()
    assert metrics["test/fit/diversity/short_rows"] == 0 and 0.0 <= metrics["test/recall@50"] <= 1.0
    assert np.isfinite(metrics["test/tail_share@50"]) and np.isfinite(metrics["test/avg_pop@50"])
