"""Joint decoding of the category hierarchy.

Independent argmaxes can contradict each other (Footwear + Topwear). Instead every path
(masterCategory, subCategory, articleType) seen in the taxonomy is scored by the sum of its levels'
log-probabilities and the best path wins, so the answer always exists in the taxonomy.
"""
from __future__ import annotations

import numpy as np

from .taxonomy import HIERARCHY_LEVELS, Taxonomy

_EPS = 1e-9


class HierarchyDecoder:
    def __init__(self, taxonomy: Taxonomy):
        self.taxonomy = taxonomy
        self.paths = np.asarray(taxonomy.path_indices(), dtype=np.int64).reshape(-1, len(HIERARCHY_LEVELS))
        if len(self.paths) == 0:
            raise ValueError("taxonomy has no category paths to decode")

    def path_scores(self, probs: dict[str, np.ndarray]) -> np.ndarray:
        """(N, P) joint log-probability of every path."""
        return sum(np.log(probs[level][:, self.paths[:, i]] + _EPS) for i, level in enumerate(HIERARCHY_LEVELS))

    def decode(self, probs: dict[str, np.ndarray], top_k: int = 3) -> list[dict]:
        """Per image: the best path, each level's confidence, and the top-k paths with their share."""
        scores = self.path_scores(probs)
        shares = np.exp(scores - scores.max(axis=1, keepdims=True))
        shares /= shares.sum(axis=1, keepdims=True)
        order = np.argsort(-scores, axis=1)[:, :top_k]
        results = []
        for row in range(scores.shape[0]):
            best = self.paths[order[row, 0]]
            levels = {}
            for i, level in enumerate(HIERARCHY_LEVELS):
                levels[level] = {"index": int(best[i]), "label": self.taxonomy.labels[level][best[i]],
                                 "confidence": float(probs[level][row, best[i]])}
            results.append({
                "levels": levels,
                "path_confidence": float(shares[row, order[row, 0]]),
                "top_paths": [
                    {"path": list(self.taxonomy.paths[p]), "confidence": float(shares[row, p])}
                    for p in order[row]
                ],
            })
        return results
