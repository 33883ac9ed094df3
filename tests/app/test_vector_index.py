"""The vector index: exact search, the switch to an inverted file past its size, exact search over a
subset, forgotten ids, (re)building the inverted file in the background; and the per-process index
reading rows committed out of id order and retraining off the search path."""
import logging
import threading

import numpy as np
from sqlalchemy.orm import sessionmaker

from app.config import Settings
from app.db import make_engine
from app.embeddings import to_bytes
from app.filters import ItemFilters
from app.models import ItemEmbedding
from app.similarity import SimilarityIndex, expanded_query
from app.store import save_analysis
from app.vector_index import VectorIndex, build_ivf

from .test_store import _items


def unit(rows: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def exact_top(vectors, query, k):
    return np.argsort(-(vectors @ query), kind="stable")[:k]


class HeldBuild:
    """Stands in for build_ivf: waits until the test releases it, so a rebuild is observably in progress
    without timing, and fails its first `failures` calls."""

    def __init__(self, hold: bool = True, failures: int = 0):
        self.started, self.release = threading.Event(), threading.Event()
        if not hold:
            self.release.set()
        self.failures, self.calls = failures, 0

    def __call__(self, vectors, train_per_cell):
        self.calls += 1
        self.started.set()
        if not self.release.wait(30):
            raise TimeoutError("the test never released the build")
        if self.calls <= self.failures:
            raise MemoryError("no room for the inverted file")
        return build_ivf(vectors, train_per_cell)


def test_exact_search_returns_item_ids_best_first():
    vectors = unit(200)
    index = VectorIndex(32, exact_max=1000)
    index.add(np.arange(200) * 10 + 5, vectors)
    ids, scores = index.search(vectors[17], 5)
    assert index.kind == "exact" and ids[0] == 175 and abs(scores[0] - 1) < 1e-3
    assert list(ids) == list(exact_top(vectors, vectors[17], 5) * 10 + 5) and list(scores) == sorted(scores, reverse=True)
    index.add(np.array([175]), vectors[:1])  # already there: ignored
    assert len(index) == 200


def test_past_exact_max_it_becomes_an_inverted_file_and_keeps_recall():
    centres = unit(20, seed=1)
    rng = np.random.default_rng(2)
    vectors = centres[rng.integers(0, 20, 3000)] + rng.normal(size=(3000, 32)).astype(np.float32) * 0.05
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = VectorIndex(32, exact_max=1000, nprobe=32)
    index.add(np.arange(1000), vectors[:1000])
    assert index.kind == "exact"
    index.add(np.arange(1000, 3000), vectors[1000:])
    assert index.kind == "ivf" and index.trained_size == 3000
    recall = np.mean([len(set(index.search(vectors[q], 10)[0]) & set(exact_top(vectors, vectors[q], 10))) / 10
                      for q in range(0, 3000, 60)])
    assert recall >= 0.95
    more = unit(3001, seed=3)
    index.add(np.arange(3000, 6001), more)  # doubled: trained again on all of it
    assert index.trained_size == 6001
    np.testing.assert_allclose(index.vector(4000), more[1000], atol=1e-3)  # stored as float16


def test_subset_search_is_exact_and_forgotten_ids_are_skipped():
    vectors = unit(500)
    index = VectorIndex(32, exact_max=100)  # an inverted file: the subset search is exact anyway
    index.add(np.arange(500), vectors)
    subset = list(range(0, 500, 7))
    ids, _ = index.search_subset(vectors[3], subset + [9999], 5)
    assert list(ids) == [subset[i] for i in exact_top(vectors[subset], vectors[3], 5)]
    index.forget([3])
    assert 3 not in index.search(vectors[3], 10)[0]


def test_a_dimension_off_the_simd_width_is_padded_inside_and_answers_the_same():
    vectors = unit(1500, dim=398, seed=4)  # the served embedding's dimension: 256 + 142
    index = VectorIndex(398, exact_max=1000, nprobe=64)
    index.add(np.arange(500), vectors[:500])
    assert index.faiss_dim == 400 and index.kind == "exact"
    ids, scores = index.search(vectors[5], 5)
    assert list(ids) == list(exact_top(vectors[:500], vectors[5], 5))
    np.testing.assert_allclose(scores, np.sort(vectors[:500] @ vectors[5])[::-1][:5], atol=2e-3)
    index.add(np.arange(500, 1500), vectors[500:])  # the inverted file, trained on padded vectors
    assert index.kind == "ivf" and list(index.search(vectors[1200], 1)[0]) == [1200]
    assert index.vector(1200).shape == (398,)
    np.testing.assert_allclose(index.vector(1200), vectors[1200], atol=1e-3)
    subset = list(range(0, 1500, 3))
    assert list(index.search_subset(vectors[9], subset, 3)[0]) == [subset[i] for i in exact_top(vectors[subset], vectors[9], 3)]


def test_a_background_rebuild_leaves_the_old_index_answering_and_takes_the_vectors_added_meanwhile():
    vectors = unit(1500)
    build = HeldBuild()
    index = VectorIndex(32, exact_max=1000, build=build)
    index.add(np.arange(1200), vectors[:1200], switch=False)
    index.rebuild_if_needed(background=True)
    assert build.started.wait(30) and index.rebuilding
    for query in (0, 600, 1199):  # the exact index still answers, exactly
        assert list(index.search(vectors[query], 5)[0]) == list(exact_top(vectors[:1200], vectors[query], 5))
    index.add(np.arange(1200, 1500), vectors[1200:], switch=False)
    index.rebuild_if_needed(background=True)  # one rebuild at a time
    assert index.kind == "exact" and index.search(vectors[1400], 1)[0][0] == 1400
    build.release.set()
    assert index.wait_for_rebuild(30) and not index.rebuilding
    assert index.kind == "ivf" and index.trained_size == 1200 and len(index) == 1500 and build.calls == 1
    for query in (5, 1200, 1350, 1499):  # trained on the snapshot; the later vectors were replayed at the swap
        assert index.search(vectors[query], 1)[0][0] == query
    np.testing.assert_allclose(index.vector(1499), vectors[1499], atol=1e-3)
    assert list(index.search_subset(vectors[1300], [1300, 4, 1450], 1)[0]) == [1300]


def test_a_failed_rebuild_is_logged_leaves_the_old_index_serving_and_is_retried_later(caplog):
    vectors = unit(1200)
    build = HeldBuild(hold=False, failures=1)
    index = VectorIndex(32, exact_max=1000, retry_after_s=3600, build=build)
    index.add(np.arange(1200), vectors, switch=False)
    with caplog.at_level(logging.ERROR, logger="app.vector_index"):
        index.rebuild_if_needed(background=True)
        assert index.wait_for_rebuild(30)
    assert "building the inverted file over 1200 vectors failed" in caplog.text
    assert index.kind == "exact" and index.trained_size == 0
    assert list(index.search(vectors[7], 3)[0]) == list(exact_top(vectors, vectors[7], 3))
    index.rebuild_if_needed(background=True)  # within retry_after_s of the failure: not yet
    assert not index.rebuilding and build.calls == 1
    index.retry_after_s = 0
    index.rebuild_if_needed(background=True)
    assert index.wait_for_rebuild(30) and build.calls == 2 and index.kind == "ivf" and index.trained_size == 1200


def test_forgotten_vectors_are_copied_out_once_they_are_many():
    vectors = unit(3000, seed=5)
    index = VectorIndex(32, exact_max=1000, nprobe=64)
    index.add(np.arange(3000), vectors)
    assert index.kind == "ivf"
    index.forget(range(0, 200))  # under FORGOTTEN_MIN: skipped by searches, still held
    index.forget([99_999])  # an id the index never held: ignored
    index.rebuild_if_needed()
    assert len(index) == 3000 and index.live_count == 2800 and 5 not in index.search(vectors[5], 10)[0]
    index.forget(range(200, 2500))
    index.rebuild_if_needed()  # 500 left: back to exact search, without the forgotten vectors
    assert index.kind == "exact" and len(index) == index.live_count == 500
    assert list(index.search(vectors[2700], 5)[0]) == list(exact_top(vectors[2500:], vectors[2700], 5) + 2500)
    np.testing.assert_allclose(index.vector(2999), vectors[2999], atol=1e-3)
    assert index.vector(10) is None and 10 not in index


def test_a_compaction_in_the_background_keeps_what_was_added_and_forgotten_meanwhile():
    vectors = unit(2000, seed=6)
    build = HeldBuild()
    index = VectorIndex(32, exact_max=1000, build=build)
    index.add(np.arange(1500), vectors[:1500], switch=False)
    index.forget(range(300))
    index.rebuild_if_needed(background=True)
    assert build.started.wait(30)
    index.add(np.arange(1500, 2000), vectors[1500:], switch=False)  # while it is built
    index.forget([400, 1900])
    build.release.set()
    assert index.wait_for_rebuild(30)
    assert index.kind == "ivf" and index.trained_size == 1200 and len(index) == 1700 and index.live_count == 1698
    for query in (300, 1499, 1500, 1999):
        assert index.search(vectors[query], 1)[0][0] == query
    assert 400 not in index.search(vectors[400], 5)[0] and 1900 not in index.search(vectors[1900], 5)[0]
    assert list(index.search_subset(vectors[1600], [1600, 10, 500], 2)[0]) == [1600, 500]


def _stored_items(database_url: str, sha_char: str, count: int):
    """An engine, its session factory and the ids of `count` items of one stored analysis."""
    engine = make_engine(database_url)
    make_session = sessionmaker(engine)
    with make_session() as session:
        analysis, _ = save_analysis(session, sha256=sha_char * 64, width=10, height=10, url=None, bundle_key="k",
                                    bundles={}, timings={}, items=_items(count), refresh=False)
        return engine, make_session, [item.id for item in analysis.items]


def test_rows_committed_out_of_id_order_are_not_missed(database_url):
    """On PostgreSQL a transaction holding a smaller id can commit after one with a larger id has been
    read; the index looks for the skipped ids again."""
    engine, make_session, item_ids = _stored_items(database_url, "c", 3)
    vectors = unit(3)
    with make_session() as session:
        session.add_all([ItemEmbedding(id=row_id, item_id=item_ids[n], model="m", vector=to_bytes(vectors[n]))
                         for row_id, n in ((10, 0), (12, 2))])
        session.commit()
    index = SimilarityIndex(Settings())
    with make_session() as session:
        assert len(index.sync(session, "m")) == 2 and index.cursor == 12
        session.add(ItemEmbedding(id=11, item_id=item_ids[1], model="m", vector=to_bytes(vectors[1])))  # the late commit
        session.commit()
        assert len(index.sync(session, "m")) == 3
        result = index.search(session, "m", vectors[1], 1, ItemFilters({}))
        assert [hit.item.id for hit in result.hits] == [item_ids[1]]
    engine.dispose()


def test_the_search_that_finds_the_index_doubled_does_not_wait_for_its_retraining(database_url):
    engine, make_session, item_ids = _stored_items(database_url, "d", 60)
    vectors = unit(60)

    def store(rows):
        with make_session() as session:
            session.add_all([ItemEmbedding(item_id=item_ids[n], model="m", vector=to_bytes(vectors[n])) for n in rows])
            session.commit()

    store(range(30))
    similarity = SimilarityIndex(Settings(similarity_exact_max=20))
    with make_session() as session:
        index = similarity.sync(session, "m")  # the first load builds the inverted file before it returns
        assert index.kind == "ivf" and index.trained_size == 30 and not index.rebuilding
        index.build = build = HeldBuild()
        store(range(30, 60))
        result = similarity.search(session, "m", vectors[45], 1, ItemFilters({}))  # doubled: retrained in the background
        assert [hit.item.id for hit in result.hits] == [item_ids[45]] and result.index_size == 60
        assert build.started.wait(30) and index.rebuilding and index.trained_size == 30
        build.release.set()
        assert index.wait_for_rebuild(30) and index.trained_size == 60
        result = similarity.search(session, "m", vectors[50], 1, ItemFilters({}))
        assert [hit.item.id for hit in result.hits] == [item_ids[50]] and result.index_kind == "ivf"
    engine.dispose()


def test_expanded_query_is_the_unit_sum_weighted_by_cosine():
    query, near, far = np.eye(4, dtype=np.float32)[:3]
    expanded = expanded_query(query, np.stack([near, far]), np.array([0.5, -0.3]), alpha=3)
    assert np.allclose(expanded, (query + 0.125 * near) / np.linalg.norm(query + 0.125 * near))  # a negative cosine counts 0
    assert np.allclose(expanded_query(query, near[None], np.array([0.5]), alpha=1),
                       (query + 0.5 * near) / np.linalg.norm(query + 0.5 * near))
    assert np.allclose(expanded_query(query, np.zeros((0, 4)), np.zeros(0)), query)  # nothing to expand by


def test_query_expansion_ranks_by_the_query_and_its_neighbours(database_url):
    """A lone item a little nearer the query than a tight group of five: searched as it is, the lone item
    comes first; expanded by its neighbours (the group outweighs it), a group member does."""
    engine, make_session, item_ids = _stored_items(database_url, "e", 6)
    basis = np.eye(32, dtype=np.float32)
    lone = 0.80 * basis[0] + 0.60 * basis[1]
    group = [0.78 * basis[0] + 0.60 * basis[2] + 0.05 * basis[3 + n] for n in range(5)]
    vectors = np.stack([lone, *group])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with make_session() as session:
        session.add_all([ItemEmbedding(item_id=i, model="m", vector=to_bytes(v)) for i, v in zip(item_ids, vectors)])
        session.commit()
    query = basis[0]
    with make_session() as session:
        plain = SimilarityIndex(Settings(similarity_query_expansion=0)).search(session, "m", query, 2, ItemFilters({}))
        assert plain.hits[0].item.id == item_ids[0] and plain.query_expansion == 0
        expanded = SimilarityIndex(Settings(similarity_query_expansion=20)).search(session, "m", query, 2, ItemFilters({}))
        assert expanded.hits[0].item.id in item_ids[1:] and expanded.query_expansion == 6  # every stored item
        assert [hit.score for hit in expanded.hits] == sorted((hit.score for hit in expanded.hits), reverse=True)
    engine.dispose()
