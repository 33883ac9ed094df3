"""A FAISS inner-product index over item ids (on unit vectors inner product = cosine similarity).

Exact search (IndexFlatIP) while the index holds up to `exact_max` vectors; above that an inverted
file (IndexIVFFlat: k-means cells, a query scans the `nprobe` nearest cells), trained on a sample of
the vectors it holds, and trained again whenever the index has doubled since (new vectors join their
nearest cell without training, but cells trained on a tenth of the data get long). Both store the
vectors as float16, the precision the database keeps them in, so nothing is lost and memory is halved;
stored vectors are read back for exact search over any subset (filtered searches with few matches)
and for retraining. bench/similarity_index.py measured where exact search stops being fast enough, and
IVF against HNSW at 100,000 vectors: IVF built in seconds where HNSW took minutes on these 2 cores, at
better recall and speed (docs/similarity.md).

(Re)training takes tens of seconds at 100,000 vectors, so it can run in a background thread
(`rebuild_if_needed(background=True)`, one at a time per index): it copies the stored vectors, trains
and fills a new inverted file from the copy while the current index keeps answering, then, under the
lock, adds the vectors stored meanwhile and swaps it in. A failed build is logged and the current index
keeps serving; a growth check `retry_after_s` later tries again. Without `background` the build runs in
the caller (bulk loads, benchmarks). Every method is safe to call from several threads.

FAISS holds the vectors zero-padded to a multiple of 16 values: its float16 distance code runs in
SIMD lanes of 8 or 16 values only when the dimension divides into them and falls back to scalar code
otherwise (exact search over 100,000 vectors of 398 values: 43 ms; padded to 400: 4 ms, measured by
bench/similarity_index.py). Zeros change no inner product; callers see their own dimension.

FAISS positions are 0..n-1 in insertion order; `ids` maps them to item ids. Items deleted since (a
refreshed analysis, a deleted image) are told to `forget`: searches skip them at once (asking FAISS for
that many more neighbours), and once they pass FORGOTTEN_MAX_FRACTION of the index (at least
FORGOTTEN_MIN of them) the next `rebuild_if_needed` copies the index without them, the same way (and in
the same background thread) as a retraining, so the overfetch stays small however much is deleted.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import faiss
import numpy as np

log = logging.getLogger(__name__)
COPY_CHUNK = 1_000  # vectors copied per lock hold (~7 ms at 1280 dims): a search waits at most that
# Forgotten ids cost every search that many more neighbours: past this share of the index (and this many),
# the index is copied without them.
FORGOTTEN_MAX_FRACTION = 0.05
FORGOTTEN_MIN = 256
SIMD_WIDTH = 16  # FAISS's dimension is padded to a multiple of this


def padded_dim(dim: int) -> int:
    return -(-dim // SIMD_WIDTH) * SIMD_WIDTH


def build_ivf(vectors: np.ndarray, train_per_cell: int) -> faiss.Index:
    """An inverted file holding `vectors` (N, dim) at positions 0..N-1, trained on a sample of them."""
    size, dim = vectors.shape
    cells = int(4 * np.sqrt(size))  # the usual 4-16 x sqrt(n); measured in the benchmark
    sample = np.random.default_rng(0).choice(size, min(size, cells * train_per_cell), replace=False)
    ivf = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(dim), dim, cells,
                                        faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    ivf.train(np.ascontiguousarray(vectors[np.sort(sample)], dtype=np.float32))
    ivf.set_direct_map_type(faiss.DirectMap.Array)  # position -> vector, for reading vectors back
    for start in range(0, size, COPY_CHUNK):  # float32 a chunk at a time: the copy stays float16
        ivf.add(np.ascontiguousarray(vectors[start:start + COPY_CHUNK], dtype=np.float32))
    return ivf


class VectorIndex:
    def __init__(self, dim: int, exact_max: int = 20_000, nprobe: int = 16, train_per_cell: int = 40,
                 retry_after_s: float = 60.0, build: Callable[[np.ndarray, int], faiss.Index] = build_ivf):
        """`build(vectors, train_per_cell)` makes the inverted file (replaceable: tests hold a rebuild open)."""
        self.dim, self.exact_max, self.nprobe, self.train_per_cell = dim, exact_max, nprobe, train_per_cell
        self.retry_after_s, self.build = retry_after_s, build
        self.faiss_dim = padded_dim(dim)
        self._index: faiss.Index = self._exact_index()
        self.kind = "exact"
        self.trained_size = 0
        self.ids = np.zeros(0, np.int64)
        self._known: set[int] = set()
        self._forgotten: set[int] = set()
        self._lock = threading.Lock()  # FAISS indexes are not safe to read while another thread adds
        self._rebuild: threading.Thread | None = None
        self._failed_at: float | None = None  # monotonic time of the last failed background build

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def live_count(self) -> int:
        """The vectors searches can return (the forgotten ones not counted)."""
        return len(self.ids) - len(self._forgotten)

    def _exact_index(self) -> faiss.Index:
        return faiss.IndexScalarQuantizer(self.faiss_dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)

    def __contains__(self, item_id: int) -> bool:
        return item_id in self._known

    def add(self, ids: np.ndarray, vectors: np.ndarray, switch: bool = True) -> None:
        """Add vectors (N, dim) for item ids; ids already present are skipped. `switch`: build the inverted
        file now (in this thread) if the size passed `exact_max` (a bulk load adds everything first, then
        switches once). During a background rebuild they also reach the new index, at its swap."""
        ids = np.asarray(ids, np.int64)
        with self._lock:
            fresh = np.array([i not in self._known for i in ids.tolist()], bool)
            if not fresh.all():
                ids, vectors = ids[fresh], vectors[fresh]
            if not len(ids):
                return
            if vectors.shape[1] != self.dim:
                raise ValueError(f"vectors of dimension {vectors.shape[1]} for an index of dimension {self.dim}")
            self._index.add(self._padded(vectors))
            self.ids = np.concatenate([self.ids, ids])
            self._known.update(ids.tolist())
        if switch:
            self.rebuild_if_needed()

    # ---- switching to (and retraining) the inverted file; dropping forgotten vectors -------------------------

    def rebuild_if_needed(self, background: bool = False) -> None:
        """Past exact_max, (re)train the inverted file: the first time, and whenever the index doubled; and
        copy the index without its forgotten vectors once they are too many.
        `background`: in a thread of its own, returning at once (nothing is started while a rebuild is
        running, or within `retry_after_s` of a failed one); otherwise here, after any pending rebuild."""
        if not background:
            self.wait_for_rebuild()
            if self._needs_rebuild():
                self._rebuild_now()
            return
        with self._lock:
            if not self._needs_rebuild() or self.rebuilding:
                return
            if self._failed_at is not None and time.monotonic() - self._failed_at < self.retry_after_s:
                return
            self._rebuild = threading.Thread(target=self._rebuild_logged, name="vector-index-rebuild", daemon=True)
            self._rebuild.start()

    def _padded(self, vectors: np.ndarray) -> np.ndarray:
        """(N, dim) -> contiguous float32 (N, faiss_dim), zeros after the caller's values."""
        out = np.zeros((len(vectors), self.faiss_dim), np.float32)
        out[:, :self.dim] = vectors
        return out

    @property
    def rebuilding(self) -> bool:
        thread = self._rebuild
        return thread is not None and thread.is_alive()

    def wait_for_rebuild(self, timeout: float | None = None) -> bool:
        """Wait for a background rebuild to be swapped in (or to fail); False if it still runs after `timeout`."""
        thread = self._rebuild
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def _needs_training(self) -> bool:
        return len(self) > self.exact_max and (self.kind == "exact" or len(self) >= 2 * self.trained_size)

    def _needs_compaction(self) -> bool:
        return len(self._forgotten) >= max(FORGOTTEN_MIN, FORGOTTEN_MAX_FRACTION * len(self))

    def _needs_rebuild(self) -> bool:
        return self._needs_training() or self._needs_compaction()

    def _rebuild_logged(self) -> None:
        try:
            self._rebuild_now()
            self._failed_at = None
        except Exception:  # noqa: BLE001 - the current index keeps serving; a later growth check retries
            self._failed_at = time.monotonic()
            log.exception("vector index: building the inverted file over %d vectors failed; the %s index keeps "
                          "serving", len(self), self.kind)

    def _rebuild_now(self) -> None:
        """A new index from a snapshot of the stored vectors, the forgotten ones left out: an inverted file
        when the rest is past exact_max, else exact."""
        started = time.perf_counter()
        with self._lock:
            dropped = set(self._forgotten)
        snapshot, snapshot_ids = self._copy_vectors()
        keep = np.array([i not in dropped for i in snapshot_ids.tolist()], bool)
        if not keep.all():
            snapshot, snapshot_ids = snapshot[keep], snapshot_ids[keep]
        if len(snapshot) > self.exact_max:
            index, kind, trained_size = self.build(snapshot, self.train_per_cell), "ivf", len(snapshot)
        else:
            index, kind, trained_size = self._exact_index(), "exact", 0
            for start in range(0, len(snapshot), COPY_CHUNK):
                index.add(np.ascontiguousarray(snapshot[start:start + COPY_CHUNK], dtype=np.float32))
        copied = len(keep)
        with self._lock:
            # Vectors added while it was built follow the snapshot (the current index holds them after it).
            size = len(self)
            if size > copied:
                index.add(self._index.reconstruct_n(copied, size - copied))
            self._index, self.kind, self.trained_size = index, kind, trained_size
            self.ids = np.concatenate([snapshot_ids, self.ids[copied:]])
            gone = dropped & self._known
            self._forgotten -= gone
            self._known -= gone
        log.info("vector index: %s index over %d vectors (%d added while it was built, %d forgotten left out) "
                 "in %.1f s", kind, len(self), size - copied, len(gone), time.perf_counter() - started)

    def _copy_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """The stored vectors as float16 (their stored precision: half the memory of float32) and their ids,
        copied a chunk per lock hold; positions already written change only at a swap, which only this
        (one-at-a-time) rebuild makes, so the chunks make one consistent copy."""
        size = len(self)
        vectors = np.empty((size, self.faiss_dim), np.float16)
        ids = self.ids[:size].copy()
        for start in range(0, size, COPY_CHUNK):
            count = min(COPY_CHUNK, size - start)
            with self._lock:
                vectors[start:start + count] = self._index.reconstruct_n(start, count)
            # Python's locks are not fair: without a pause this thread takes the lock straight back and a
            # waiting search starves for the whole copy (1.4 s at 100,000 vectors, measured).
            time.sleep(0)
        return vectors, ids

    # ---- reading ---------------------------------------------------------------------------------------------

    def forget(self, item_ids) -> None:
        """Searches skip these items from now on (ids the index does not hold are ignored)."""
        with self._lock:
            self._forgotten.update(i for i in map(int, item_ids) if i in self._known)

    def search(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest item ids and their scores (best first); fewer when the index is smaller."""
        query = self._padded(vector.reshape(1, -1))
        with self._lock:
            k_asked = min(len(self), k + len(self._forgotten))
            if k_asked <= 0:
                return np.zeros(0, np.int64), np.zeros(0, np.float32)
            if self.kind == "ivf":
                scores, positions = self._index.search(query, k_asked,
                                                       params=faiss.SearchParametersIVF(nprobe=self.nprobe))
            else:
                scores, positions = self._index.search(query, k_asked)
            keep = positions[0] >= 0
            ids, scores = self.ids[positions[0][keep]], scores[0][keep]
            if self._forgotten:
                alive = np.array([i not in self._forgotten for i in ids.tolist()], bool)
                ids, scores = ids[alive], scores[alive]
        return ids[:k], scores[:k]

    def search_subset(self, vector: np.ndarray, item_ids, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact search among `item_ids` only (ids not in the index are ignored)."""
        with self._lock:
            positions = np.flatnonzero(np.isin(self.ids, np.asarray(list(item_ids), np.int64)))
            if not len(positions):
                return np.zeros(0, np.int64), np.zeros(0, np.float32)
            stored = self._index.reconstruct_batch(positions.astype(np.int64))[:, :self.dim]
            ids = self.ids[positions]
        scores = stored @ vector.astype(np.float32)
        best = np.argsort(-scores, kind="stable")[:k]
        return ids[best], scores[best]

    def vectors(self, item_ids) -> tuple[np.ndarray, np.ndarray]:
        """The stored vectors of `item_ids` (those in the index) and their ids, in the index's order."""
        with self._lock:
            positions = np.flatnonzero(np.isin(self.ids, np.asarray(list(item_ids), np.int64)))
            if not len(positions):
                return np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32)
            return self.ids[positions], self._index.reconstruct_batch(positions.astype(np.int64))[:, :self.dim]

    def vector(self, item_id: int) -> np.ndarray | None:
        with self._lock:
            positions = np.flatnonzero(self.ids == item_id)
            return self._index.reconstruct(int(positions[0]))[:self.dim] if len(positions) else None

    def memory_bytes(self) -> int:
        """Bytes FAISS holds (vectors, cells, id map), measured by serialising the index."""
        with self._lock:
            return int(faiss.serialize_index(self._index).nbytes)
