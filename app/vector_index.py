"""A FAISS inner-product index over item ids (on unit vectors inner product = cosine similarity).

Exact search (IndexFlatIP) while the index holds up to `exact_max` vectors; above that an inverted
file (IndexIVFFlat: k-means cells, a query scans the `nprobe` nearest cells), trained on a sample of
the vectors it holds, and trained again whenever the index has doubled since (new vectors join their
nearest cell without training, but cells trained on a tenth of the data get long). Both store the
vectors as float16, the precision the database keeps them in, so nothing is lost and memory is halved;
stored vectors are read back for exact search over any subset (filtered searches with few matches)
and for retraining. bench/similarity_index.py measured where exact search stops being fast enough, and
IVF against HNSW at 100,000 vectors: IVF built in seconds where HNSW took minutes on these 2 cores, at
better recall and speed (README, Similarity search).

FAISS positions are 0..n-1 in insertion order; `ids` maps them to item ids. Vectors are never removed
(removal from FAISS is a linear scan per call): items deleted since (a refreshed analysis) are dropped by the caller, which reads
every hit back from the database, and told to `forget`, so later searches skip them.
"""
from __future__ import annotations

import faiss
import numpy as np


class VectorIndex:
    def __init__(self, dim: int, exact_max: int = 20_000, nprobe: int = 16, train_per_cell: int = 40):
        self.dim, self.exact_max, self.nprobe, self.train_per_cell = dim, exact_max, nprobe, train_per_cell
        self._index: faiss.Index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16,
                                                              faiss.METRIC_INNER_PRODUCT)
        self.kind = "exact"
        self.trained_size = 0
        self.ids = np.zeros(0, np.int64)
        self._known: set[int] = set()
        self._forgotten: set[int] = set()

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, item_id: int) -> bool:
        return item_id in self._known

    def add(self, ids: np.ndarray, vectors: np.ndarray, switch: bool = True) -> None:
        """Add vectors (N, dim) for item ids; ids already present are skipped. `switch`: turn into HNSW
        now if the size passed `exact_max` (a bulk load adds everything first, then switches once)."""
        ids = np.asarray(ids, np.int64)
        fresh = np.array([i not in self._known for i in ids.tolist()], bool)
        if not fresh.all():
            ids, vectors = ids[fresh], vectors[fresh]
        if not len(ids):
            return
        if vectors.shape[1] != self.dim:
            raise ValueError(f"vectors of dimension {vectors.shape[1]} for an index of dimension {self.dim}")
        self._index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        self.ids = np.concatenate([self.ids, ids])
        self._known.update(ids.tolist())
        if switch:
            self.switch_if_large()

    def switch_if_large(self) -> None:
        """Past exact_max, (re)train the inverted file: the first time, and whenever the index doubled."""
        if len(self) <= self.exact_max or (self.kind == "ivf" and len(self) < 2 * self.trained_size):
            return
        vectors = self._index.reconstruct_n(0, len(self))
        cells = int(4 * np.sqrt(len(self)))  # the usual 4-16 x sqrt(n); measured in the benchmark
        sample = np.random.default_rng(0).choice(len(self), min(len(self), cells * self.train_per_cell), replace=False)
        ivf = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(self.dim), self.dim, cells,
                                            faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
        ivf.train(np.ascontiguousarray(vectors[np.sort(sample)]))
        ivf.set_direct_map_type(faiss.DirectMap.Array)  # position -> vector, for reading vectors back
        ivf.add(vectors)
        del vectors
        self._index, self.kind, self.trained_size = ivf, "ivf", len(self)

    def forget(self, item_ids) -> None:
        self._forgotten.update(int(i) for i in item_ids)

    def search(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest item ids and their scores (best first); fewer when the index is smaller."""
        k_asked = min(len(self), k + len(self._forgotten))
        if k_asked <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        query = np.ascontiguousarray(vector.reshape(1, -1), dtype=np.float32)
        if self.kind == "ivf":
            scores, positions = self._index.search(query, k_asked, params=faiss.SearchParametersIVF(nprobe=self.nprobe))
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
        positions = np.flatnonzero(np.isin(self.ids, np.asarray(list(item_ids), np.int64)))
        if not len(positions):
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        scores = self._index.reconstruct_batch(positions.astype(np.int64)) @ vector.astype(np.float32)
        best = np.argsort(-scores, kind="stable")[:k]
        return self.ids[positions[best]], scores[best]

    def vector(self, item_id: int) -> np.ndarray | None:
        positions = np.flatnonzero(self.ids == item_id)
        return self._index.reconstruct(int(positions[0])) if len(positions) else None

    def memory_bytes(self) -> int:
        """Bytes FAISS holds (vectors, cells, id map), measured by serialising the index."""
        return int(faiss.serialize_index(self._index).nbytes)
