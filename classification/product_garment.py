"""A phone photo's own tags read together with the one garment the detector found on it.

The pipeline reads a phone photo of one garment twice: the whole photo, letterboxed to the classifier's
input size (the product item's tags), and the garment the detector boxed, cut out and read at the garment
input size, so more of the network's pixels fall on the garment and fewer on the bed or floor around it.
The two readings err on different photos, so on images the kind gate reads as one of `kinds` (default:
phone photos) whose detections leave exactly one garment once fragments are dropped (app/fragments.py),
the product's category probabilities are pooled with that garment's own reading before the product's
path is decoded, with the same poolings as the garment context (classification/garment_context.py, the
other direction: each row is pooled with the other's reading from before either pooling). A photo with
two garments, or none, keeps its own reading: it names no single garment.

Measured by bench/product_garment_probe.py on the 1,100 held-out phone photos, the weight chosen on half of
the validation senders and scored on the other half (docs/detector.md, "A phone photo read with its
garment"). Only the category group is pooled; colour, season and usage, and the embeddings, are the whole
image's own.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

from .garment_context import GarmentContext

# (a whole image's row, how the kind gate read it) -> the rows of its garments the pipeline keeps
KeptGarments = Callable[[int, str | None], Sequence[int]]


@dataclasses.dataclass(frozen=True)
class ProductGarment(GarmentContext):
    """`pooling` and `weight` (the garment's share) as GarmentContext parses them; `kinds` of whole image."""

    def pairs(self, read: Sequence[str] | None, whole_image_rows: Sequence[int] | None,
              kept_garments: KeptGarments | None) -> dict[int, int]:
        """Each whole image's row -> its one kept garment's row, for the images the gate read as one of `kinds`."""
        if self.pooling == "off" or read is None or whole_image_rows is None or kept_garments is None:
            return {}
        out = {}
        for row, whole in enumerate(whole_image_rows):
            if whole != row or (self.kinds is not None and read[row] not in self.kinds):
                continue
            kept = list(kept_garments(row, read[row]))
            if len(kept) == 1:
                out[row] = kept[0]
        return out
