"""Joint decoding of the category hierarchy.

Independent argmaxes can contradict each other (Footwear + Topwear). Instead every path
(masterCategory, subCategory, articleType) seen in the taxonomy is scored by the sum of its levels'
log-probabilities and the best path wins, so the answer always exists in the taxonomy.

An image may come with a set of allowed paths (the garment detector's class, see detector_prior.py):
the chosen path is then the best allowed one (hard), or the best after the probability of every other
path is multiplied by `outside_weight` (soft). Only the choice changes: confidences, path shares and
top paths stay the model's own.

A path the taxonomy calls a labelling slip (Taxonomy.slips: Apparel / Topwear / Dresses, 2 catalogue
rows) is still chosen as the scores say, which keeps every measured figure, but shown as its articleType's
commonest path (Apparel / Dress / Dresses): the same articleType, under the parents the catalogue means.
A shown path's share is that of every path shown as it.
"""
from __future__ import annotations

import numpy as np

from typing import Collection, Sequence

from .taxonomy import HIERARCHY_LEVELS, Taxonomy

_EPS = 1e-9
# An image's allowed (masterCategory, subCategory, articleType) paths.
AllowedPaths = Collection[tuple[str, str, str]]


def _set_key(allowed: AllowedPaths) -> frozenset:
    return allowed if isinstance(allowed, frozenset) else frozenset(tuple(path) for path in allowed)


class HierarchyDecoder:
    def __init__(self, taxonomy: Taxonomy):
        self.taxonomy = taxonomy
        self.paths = np.asarray(taxonomy.path_indices(), dtype=np.int64).reshape(-1, len(HIERARCHY_LEVELS))
        if len(self.paths) == 0:
            raise ValueError("taxonomy has no category paths to decode")
        # shown[p]: the path shown when path p is chosen (itself, or its articleType's commonest for a slip)
        self.shown = np.arange(len(self.paths))
        for slip, commonest in taxonomy.slips.items():
            self.shown[slip] = commonest
        self.visible = self.shown == np.arange(len(self.paths))  # a slip is never listed itself
        self._masks: dict[frozenset, np.ndarray] = {}
        self._level_masks: dict[tuple[frozenset, int], np.ndarray] = {}

    def path_scores(self, probs: dict[str, np.ndarray]) -> np.ndarray:
        """(N, P) joint log-probability of every path."""
        return sum(np.log(probs[level][:, self.paths[:, i]] + _EPS) for i, level in enumerate(HIERARCHY_LEVELS))

    def allowed_mask(self, allowed: AllowedPaths) -> np.ndarray:
        """(P,) bool: which of the taxonomy's paths (masterCategory, subCategory, articleType) are in `allowed`.
        Cached per set: the serving prior hands the same few sets (one per detector class) to every crop."""
        key = _set_key(allowed)
        mask = self._masks.get(key)
        if mask is None:
            mask = self._masks[key] = np.asarray([tuple(path) in key for path in self.taxonomy.paths], dtype=bool)
        return mask

    def level_mask(self, allowed: AllowedPaths, level: int) -> np.ndarray:
        """(classes,) bool: the classes of hierarchy level `level` (0 masterCategory ... 2 articleType)
        that some path of `allowed` goes through. Cached per set and level, as allowed_mask."""
        key = (_set_key(allowed), level)
        mask = self._level_masks.get(key)
        if mask is None:
            mask = np.zeros(self.taxonomy.num_classes(HIERARCHY_LEVELS[level]), dtype=bool)
            mask[self.paths[self.allowed_mask(allowed), level]] = True
            self._level_masks[key] = mask
        return mask

    def decode(self, probs: dict[str, np.ndarray], top_k: int = 3,
               allowed: Sequence[AllowedPaths | None] | None = None, outside_weight: float = 0.0) -> list[dict]:
        """Per image: the best path, each level's confidence, and the top-k paths with their share.

        `allowed` (one set of paths per image, None: unconstrained) restricts the choice to those paths
        when `outside_weight` is 0, else multiplies the other paths' probability by it. A set that
        holds no path of the taxonomy leaves that image unconstrained."""
        scores = self.path_scores(probs)
        shares = np.exp(scores - scores.max(axis=1, keepdims=True))
        shares /= shares.sum(axis=1, keepdims=True)
        shown_shares = np.zeros_like(shares)  # each shown path's share: its own and its slips'
        np.add.at(shown_shares, (slice(None), self.shown), shares)
        # by share (ties by score, then by index: the order np.argmax chooses in) so the top path is the chosen one
        order = np.lexsort((-scores, -np.where(self.visible, shown_shares, -1.0)), axis=1)[:, :top_k]
        outside = np.log(outside_weight) if outside_weight > 0 else -np.inf
        results = []
        for row in range(scores.shape[0]):
            chosen, constrained = int(np.argmax(scores[row])), False  # chosen by the scores; shown as below
            mask = None
            if allowed is not None and allowed[row] is not None:
                mask = self.allowed_mask(allowed[row])
                if mask.any():
                    chosen, constrained = int(np.argmax(np.where(mask, scores[row], scores[row] + outside))), True
            if not constrained or outside_weight > 0 or mask[self.shown[chosen]]:  # a hard choice stays allowed
                chosen = int(self.shown[chosen])
            best = self.paths[chosen]
            levels = {}
            for i, level in enumerate(HIERARCHY_LEVELS):
                levels[level] = {"index": int(best[i]), "label": self.taxonomy.labels[level][best[i]],
                                 "confidence": float(probs[level][row, best[i]])}
            results.append({
                "levels": levels,
                "path_confidence": float(shown_shares[row, chosen]),  # the model's own share of the shown path
                "constrained": constrained,
                "top_paths": [
                    {"path": list(self.taxonomy.paths[p]), "confidence": float(shown_shares[row, p])}
                    for p in order[row] if self.visible[p]
                ],
            })
        return results
