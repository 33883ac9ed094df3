"""A garment read together with its whole image, on images of one product.

On a phone photo of one garment (a marketplace listing: a shirt on a bed, shorts on a floor) the
detector, which learnt on street photos of people, often boxes a part of the garment, a sleeve or one
leg of the shorts, and the classifier names that part wrongly (a leg of shorts reads as a skirt), while
it names the whole photo right far more often. So on images the classifier's kind gate reads as one of
`kinds` (default: phone photos), each garment's category probabilities are pooled with its whole
image's before its path is decoded:

- `log:<w>`: p^(1 - w) x q^w, renormalised (log-linear pooling: a garment the classifier is sure of keeps
  its reading, an unsure one leans to the whole image's; a photo of two garments side by side keeps more
  of each than linear pooling does);
- `linear:<w>`: (1 - w) p + w q.

Measured by bench/garment_context_probe.py on the 1,100 held-out phone photos and 400 side-by-side pairs
of them (docs/detector.md, "A garment read with its photo"). Only the category group (gender and the
taxonomy path) is pooled: colour, season and usage are the garment's own. Embeddings are not touched.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

import numpy as np

from .detector_prior import parse_kinds

POOLINGS = ("log", "linear")
POOLED_TASKS = ("gender", "masterCategory", "subCategory", "articleType")  # what a garment shares with its product


def pooled(own: np.ndarray, whole: np.ndarray, weight: float, pooling: str) -> np.ndarray:
    """Rows of `own` pooled with `whole` (one row, or as many as `own`) at `weight` (0: own, 1: whole)."""
    if pooling == "linear":
        return (1 - weight) * own + weight * whole
    logs = (1 - weight) * np.log(np.maximum(own, 1e-12)) + weight * np.log(np.maximum(whole, 1e-12))
    out = np.exp(logs - logs.max(axis=-1, keepdims=True))
    return (out / out.sum(axis=-1, keepdims=True)).astype(own.dtype)


@dataclasses.dataclass(frozen=True)
class GarmentContext:
    pooling: str = "off"  # off | log | linear
    weight: float = 0.0  # the whole image's share
    kinds: frozenset[str] | None = frozenset({"photo"})  # images (whole, by the kind gate) whose garments pool; None: all

    @classmethod
    def parse(cls, spec: str, kinds: str | frozenset[str] | None = "photo") -> "GarmentContext":
        """`off`, `log:<weight>` or `linear:<weight>` with 0 < weight <= 1; `kinds` as parse_kinds reads it."""
        spec = spec.strip().lower()
        kinds = parse_kinds(kinds) if isinstance(kinds, str) else kinds
        if spec == "off":
            return cls()
        pooling, _, weight = spec.partition(":")
        if pooling not in POOLINGS or not weight:
            raise ValueError(f"garment context must be off, log:<weight> or linear:<weight>, got {spec!r}")
        weight = float(weight)
        if not 0.0 < weight <= 1.0:
            raise ValueError(f"garment context weight must be in (0, 1], got {weight}")
        return cls(pooling, weight, kinds)

    @property
    def name(self) -> str:
        if self.pooling == "off":
            return "off"
        base = f"{self.pooling}:{self.weight:g}"
        return base if self.kinds is None else f"{base}/{'+'.join(sorted(self.kinds))}"

    def pooled_rows(self, read: Sequence[str] | None, whole_image_rows: Sequence[int] | None) -> list[int]:
        """The garment rows whose whole image the kind gate read (`read[row]`) as one of `kinds`."""
        if self.pooling == "off" or whole_image_rows is None or read is None:
            return []
        return [i for i, whole in enumerate(whole_image_rows)
                if whole != i and (self.kinds is None or read[whole] in self.kinds)]

    def apply(self, probs: Mapping[str, np.ndarray], read: Sequence[str] | None,
              whole_image_rows: Sequence[int] | None) -> dict[str, np.ndarray]:
        """`probs` with each garment row's category tasks pooled with its whole image's row, where the kind
        gate read that whole image (`read[row]`) as one of `kinds`. `whole_image_rows[i]`: the row of the whole
        image row i was cut from (a whole image is its own row); without it, or without a gate, as it was."""
        return self.pool(probs, self.pooled_rows(read, whole_image_rows), whole_image_rows)

    def pool(self, probs: Mapping[str, np.ndarray], rows: Sequence[int],
             whole_image_rows: Sequence[int] | None) -> dict[str, np.ndarray]:
        """`probs` with the category tasks of `rows` (pooled_rows) pooled with their whole images' rows."""
        return self.pool_pairs(probs, {row: whole_image_rows[row] for row in rows})

    def pool_pairs(self, probs: Mapping[str, np.ndarray], pairs: Mapping[int, int],
                   source: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """`probs` with the category tasks of each row of `pairs` pooled with its paired row, both read from
        `source` (default `probs`: the rows as they were before any pooling, so two rules can pool the same
        rows each way, every row with the other's own reading)."""
        out = dict(probs)
        if not pairs:
            return out
        source = probs if source is None else source
        rows, others = list(pairs), list(pairs.values())
        for task in POOLED_TASKS:
            if task in out:
                values = out[task].copy()
                values[rows] = pooled(source[task][rows], source[task][others], self.weight, self.pooling)
                out[task] = values
        return out
