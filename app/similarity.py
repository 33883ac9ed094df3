"""Similarity search over stored items: each worker process keeps one vector index of the serving
classifier's embeddings, current with the database, and answers "more like this" with the catalogue
filters.

Kept current without a restart: before each search the index reads embedding rows newer than the last
one it saw (one indexed range query; nothing new is the common case), so items stored by other gunicorn
workers, by Celery workers on other machines, or by `flask embeddings backfill` are found by the next
search. Row ids come from a sequence, and on PostgreSQL a transaction may commit after one with a
larger id; ids skipped over are therefore re-read for GAP_SECONDS before they are given up as rolled
back or deleted. When the rows read take the index past SIMILARITY_EXACT_MAX, or double it since its
inverted file was trained, the inverted file is (re)built in a background thread and swapped in when
ready; searches meanwhile use the index as it was (VectorIndex). Only the first load builds it before
returning: searches wait for that load anyway, and exact search over that many vectors is too slow.

Deleted items (a refreshed analysis, a deleted image) are never answered: every hit is read back from the
database, and what is gone is dropped and forgotten by the index; the worker that deletes an image
forgets its items at once, and the query expansion checks its neighbours against the database first.
The index copies itself without forgotten vectors once they are many (VectorIndex).

Query expansion (SIMILARITY_QUERY_EXPANSION nearest items; 0: off): the query is first searched as it
is, then searched again as the unit sum of itself and its nearest stored items, each weighted by its
cosine cubed (alpha query expansion). What the query's nearest items share (the kind of garment)
outweighs what set the query apart: +0.007 to +0.010 precision@10 on each held-out gallery, the
size and alpha chosen on the catalogue validation split (bench/vote_probes.py, docs/similarity.md).
The expansion leaves out what the results leave out (the query's own image, unless asked for) and
ignores the filters; the returned scores are the cosines to the expanded query (what the ranking used).

Filters: the index is asked for k x SIMILARITY_OVERFETCH neighbours, which are then filtered in SQL with
the /v1/items conditions. When fewer than k pass (a rare filter), the search is exact over the filtered
items themselves, provided there are at most SIMILARITY_FILTERED_EXACT_MAX of them (a filter that broad
always passes enough over-fetched neighbours in practice).
"""
from __future__ import annotations

import dataclasses
import logging
import threading
import time

import numpy as np
from sqlalchemy import or_, select, true
from sqlalchemy.orm import Session, selectinload

from .config import Settings
from .embeddings import from_bytes, matrix_from_bytes
from .filters import ItemFilters
from .models import Analysis, Item, ItemEmbedding, is_current_analysis
from .vector_index import VectorIndex

log = logging.getLogger(__name__)
GAP_SECONDS = 120.0
MAX_GAPS = 10_000
LOAD_CHUNK = 5_000
# Query expansion weighs each neighbour by cosine^alpha: far neighbours count little (alpha 3 and the
# SIMILARITY_QUERY_EXPANSION default of 20 chosen together on the catalogue validation split).
EXPANSION_ALPHA = 3.0


@dataclasses.dataclass
class Hit:
    item: Item
    score: float


@dataclasses.dataclass
class SearchResult:
    hits: list[Hit]
    method: str  # "index", "index+filter" or "exact-subset"
    index_kind: str  # "exact" or "ivf"
    index_size: int
    query_expansion: int = 0  # how many stored items expanded the query (0: searched as it came)


class SimilarityIndex:
    """This process's index of one classifier model's embeddings."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.model: str | None = None
        self.index: VectorIndex | None = None
        self.cursor = 0  # the largest embedding row id read
        self._gaps: dict[int, float] = {}  # row ids skipped over -> when first noticed
        self._lock = threading.Lock()  # the sync state: model, index, cursor, gaps

    # ---- keeping current ------------------------------------------------------------------------------------

    def sync(self, session: Session, model: str) -> VectorIndex:
        """Read embedding rows of `model` stored since the last call (all of them the first time)."""
        with self._lock:
            if model != self.model or self.index is None:
                self.model, self.index, self.cursor, self._gaps = model, None, 0, {}
                started = time.perf_counter()
                self._read_new(session)
                log.info("similarity index built: %d vectors of %s (%s) in %.1f s", len(self.index or ()), model,
                         self.index.kind if self.index else "empty", time.perf_counter() - started)
            else:
                self._read_new(session)
            return self.index or VectorIndex(1)

    def _read_new(self, session: Session) -> None:
        now = time.monotonic()
        self._gaps = {i: t for i, t in self._gaps.items() if now - t < GAP_SECONDS}
        newer = ItemEmbedding.id > self.cursor
        condition = or_(newer, ItemEmbedding.id.in_(list(self._gaps))) if self._gaps else newer
        # Items of superseded analyses (their image analysed again since) are never searched: skipped here,
        # and forgotten when a search meets one that was current when read.
        statement = (select(ItemEmbedding.id, ItemEmbedding.item_id, ItemEmbedding.vector)
                     .join(Item, Item.id == ItemEmbedding.item_id).join(Analysis, Analysis.id == Item.analysis_id)
                     .where(ItemEmbedding.model == self.model, condition, is_current_analysis())
                     .order_by(ItemEmbedding.id))
        first_load = self.cursor == 0
        seen: list[int] = []
        result = session.execute(statement.execution_options(yield_per=LOAD_CHUNK))
        for chunk in result.partitions(LOAD_CHUNK):
            row_ids = [row.id for row in chunk]
            vectors = matrix_from_bytes([row.vector for row in chunk])
            if self.index is None:
                self.index = VectorIndex(vectors.shape[1], self.settings.similarity_exact_max,
                                         self.settings.similarity_nprobe)
            self.index.add(np.array([row.item_id for row in chunk], np.int64), vectors, switch=False)
            seen += row_ids
        session.rollback()  # end the read transaction: the next sync must see newer commits
        if self.index is not None:
            self.index.rebuild_if_needed(background=not first_load)
        if not seen:
            return
        for row_id in seen:
            self._gaps.pop(row_id, None)
        top = max(seen)
        if top > self.cursor:
            # Ids between the old cursor and the new top that did not come back may be transactions still
            # in flight (PostgreSQL); look for them again in later syncs. A first load only watches the
            # last ids below its top: older gaps are long settled (deleted rows).
            low = max(self.cursor, top - 1_000) if first_load else self.cursor
            missing = set(range(low + 1, top)) - set(seen)
            if len(missing) <= MAX_GAPS:
                self._gaps.update({i: now for i in missing})
            self.cursor = top

    def forget(self, item_ids) -> None:
        """Items this process deleted: never answered again (other processes learn it from the database)."""
        index = self.index
        if index is not None and item_ids:
            index.forget(item_ids)

    def build_in_background(self, sessionmaker, model: str) -> threading.Thread:
        """Build the index at process start without holding up readiness (searches meanwhile wait for it)."""
        def build():
            try:
                with sessionmaker() as session:
                    self.sync(session, model)
            except Exception:  # noqa: BLE001 - the first search builds it again
                log.exception("similarity index not built at start")

        thread = threading.Thread(target=build, name="similarity-index-build", daemon=True)
        thread.start()
        return thread

    # ---- searching ------------------------------------------------------------------------------------------

    def item_vector(self, session: Session, item_id: int, model: str) -> np.ndarray | None:
        vector = session.scalar(select(ItemEmbedding.vector).where(ItemEmbedding.item_id == item_id,
                                                                   ItemEmbedding.model == model))
        return None if vector is None else from_bytes(vector)

    def search(self, session: Session, model: str, vector: np.ndarray, k: int, filters: ItemFilters,
               exclude_analyses: set[int] = frozenset()) -> SearchResult:
        """The k stored items most similar to `vector` that pass `filters`, best first; items of the
        analyses in `exclude_analyses` (the query's own image) are left out."""
        index = self.sync(session, model)
        settings = self.settings
        # The query image's own items come first: ask for that many more (and expand by none of them).
        own = set(session.scalars(select(Item.id).where(Item.analysis_id.in_(exclude_analyses)))) \
            if exclude_analyses else set()
        asked = k * (settings.similarity_overfetch if filters.active else 1) + len(own)
        expanded_by = 0
        if settings.similarity_query_expansion > 0:
            # Neighbours deleted or superseded since this index read them (by another process) must not shape it
            # either.
            stored = lambda ids: set(session.scalars(select(Item.id).join(Analysis).where(  # noqa: E731
                Item.id.in_(ids), is_current_analysis())))
            vector, expanded_by = expand_from_index(index, vector, settings.similarity_query_expansion, own, stored)
        ids, scores = index.search(vector, asked)  # the index guards itself (a rebuild may be swapping in)
        hits = self._readable_hits(session, index, ids, scores, filters, exclude_analyses)
        method = "index+filter" if filters.active else "index"
        if len(hits) < k and filters.active and len(ids) >= asked:
            subset = session.scalars(select(Item.id).join(Analysis).where(
                *filters.conditions(), Analysis.id.not_in(exclude_analyses) if exclude_analyses else true())
                .limit(settings.similarity_filtered_exact_max + 1)).all()
            if len(subset) <= settings.similarity_filtered_exact_max:
                ids, scores = index.search_subset(vector, subset, k)
                hits = self._readable_hits(session, index, ids, scores, ItemFilters({}), exclude_analyses)
                method = "exact-subset"
        return SearchResult(hits[:k], method, index.kind, index.live_count, expanded_by)

    @staticmethod
    def _readable_hits(session, index, ids, scores, filters: ItemFilters, exclude_analyses) -> list[Hit]:
        """Read the hits back from the database (in score order), applying the filters: ids whose items
        are gone (a refreshed analysis, a deleted image) are dropped and forgotten by the index."""
        if not len(ids):
            return []
        statement = (select(Item).join(Analysis).where(Item.id.in_(ids.tolist()), *filters.conditions())
                     .options(selectinload(Item.analysis).selectinload(Analysis.image)))
        rows = {item.id: item for item in session.scalars(statement)}
        if not filters.active:
            gone = set(ids.tolist()) - set(rows)
            if gone:
                index.forget(gone)
        return [Hit(rows[i], float(s)) for i, s in zip(ids.tolist(), scores.tolist())
                if i in rows and rows[i].analysis_id not in exclude_analyses]


def expanded_query(vector: np.ndarray, neighbours: np.ndarray, cosines: np.ndarray,
                   alpha: float = EXPANSION_ALPHA) -> np.ndarray:
    """Query expansion: the unit sum of the query and its neighbours, each weighted by its cosine to the
    query to the power `alpha` (negative cosines count 0). No neighbours: the query itself."""
    vector = np.asarray(vector, np.float32)
    if not len(cosines):
        return vector
    total = vector + (np.clip(np.asarray(cosines, np.float32), 0, None)[:, None] ** alpha
                      * np.asarray(neighbours, np.float32)).sum(axis=0)
    norm = float(np.linalg.norm(total))
    return total / norm if norm > 0 else vector


def expand_from_index(index: VectorIndex, vector: np.ndarray, count: int, leave_out=frozenset(),
                      stored=None) -> tuple[np.ndarray, int]:
    """`vector` expanded by its `count` nearest items in `index` (the ids in `leave_out` skipped), and how
    many expanded it. `stored(ids)`, when given, says which of the neighbours are still stored: the others
    (deleted since the index read them) are skipped and forgotten by the index. One search, one lookup."""
    ids, cosines = index.search(vector, count + len(leave_out))
    skip = set(leave_out)
    if stored is not None and len(ids):
        gone = set(ids.tolist()) - stored(ids.tolist())
        index.forget(gone)
        skip |= gone
    if skip:
        keep = np.array([i not in skip for i in ids.tolist()], bool)
        ids, cosines = ids[keep], cosines[keep]
    ids, cosines = ids[:count], cosines[:count]
    found, vectors = index.vectors(ids)
    cosine_of = dict(zip(ids.tolist(), cosines.tolist()))
    return expanded_query(vector, vectors, np.array([cosine_of[i] for i in found.tolist()], np.float32)), len(found)
