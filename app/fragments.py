"""Garment fragments: parts of one garment that the detector boxed as more garments.

On a phone photo of one garment (a marketplace listing: a shirt on a bed, trousers on a floor) the
detector, which learnt on street photos of people, often boxes the garment and then parts of it again: a
sleeve, a trouser leg, a pocket (bench/photo_garments.py draws them). Each such box would be stored as one
more garment item, and a search or a recommender reading the items sees garments the photo does not have.
So on images the classifier's kind gate reads as one of `kinds` (default: phone photos), a detection whose
box lies at least `containment` inside the box of a larger garment kept on the same image is dropped as a
fragment of it (the share of its own box's area inside the other's). On street photos of people a garment
inside another's box is usually a real one (a blouse under an open coat), so they are left alone.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

from classification.detector_prior import parse_kinds

Box = Sequence[float]  # x1, y1, x2, y2


def area(box: Box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def share_inside(inner: Box, outer: Box) -> float:
    """The share of `inner`'s area that lies inside `outer` (0 for an empty `inner`)."""
    width = min(inner[2], outer[2]) - max(inner[0], outer[0])
    height = min(inner[3], outer[3]) - max(inner[1], outer[1])
    own = area(inner)
    return max(0.0, width) * max(0.0, height) / own if own > 0 else 0.0


@dataclasses.dataclass(frozen=True)
class GarmentFragments:
    containment: float | None = None  # None: off
    kinds: frozenset[str] | None = frozenset({"photo"})  # images (whole, by the kind gate) it applies to; None: all

    @classmethod
    def parse(cls, spec: str, kinds: str | frozenset[str] | None = "photo") -> "GarmentFragments":
        """`off`, or the containment in (0, 1] above which a box is a fragment; `kinds` as parse_kinds reads it."""
        spec = spec.strip().lower()
        kinds = parse_kinds(kinds) if isinstance(kinds, str) else kinds
        if spec == "off":
            return cls(None, kinds)
        try:
            containment = float(spec)
        except ValueError:
            raise ValueError(f"garment fragments must be off or a containment in (0, 1], got {spec!r}") from None
        if not 0.0 < containment <= 1.0:
            raise ValueError(f"garment fragments containment must be in (0, 1], got {containment}")
        return cls(containment, kinds)

    @property
    def name(self) -> str:
        if self.containment is None:
            return "off"
        return f"{self.containment:g}" + ("" if self.kinds is None else f"/{'+'.join(sorted(self.kinds))}")

    def applies_to(self, image_kind: str | None) -> bool:
        """Whether garments of an image the kind gate read as `image_kind` are checked (never without a gate)."""
        return self.containment is not None and image_kind is not None and (self.kinds is None or image_kind in self.kinds)

    def kept(self, boxes: Sequence[Box], image_kind: str | None) -> list[int]:
        """The indices (in their order) of the boxes that are not fragments of a larger kept one."""
        if not self.applies_to(image_kind):
            return list(range(len(boxes)))
        kept: list[int] = []
        for index in sorted(range(len(boxes)), key=lambda i: -area(boxes[i])):  # the largest first: the garment
            if all(share_inside(boxes[index], boxes[k]) < self.containment for k in kept):
                kept.append(index)
        return sorted(kept)
