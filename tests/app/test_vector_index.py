"""The vector index: exact search, the switch to an inverted file past its size, exact search over a
subset, forgotten ids; and the per-process index reading rows committed out of id order."""
import numpy as np
from sqlalchemy.orm import sessionmaker

from app.config import Settings
from app.db import make_engine
from app.embeddings import to_bytes
from app.filters import ItemFilters
from app.models import ItemEmbedding
from app.similarity import SimilarityIndex
from app.store import save_analysis
from app.vector_index import VectorIndex

from .test_store import _items


def unit(rows: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def exact_top(vectors, query, k):
    return np.argsort(-(vectors @ query), kind="stable")[:k]


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


def test_rows_committed_out_of_id_order_are_not_missed(database_url):
    """On PostgreSQL a transaction holding a smaller id can commit after one with a larger id has been
    read; the index looks for the skipped ids again."""
    engine = make_engine(database_url)
    make_session = sessionmaker(engine)
    with make_session() as session:
        analysis, _ = save_analysis(session, sha256="c" * 64, width=10, height=10, url=None, bundle_key="k", bundles={},
                                    timings={}, items=_items(3), refresh=False)
        item_ids = [item.id for item in analysis.items]
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
