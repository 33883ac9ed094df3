"""The detector's class as a prior on the classifier's category path.

Which taxonomy paths a garment detector class allows is derived from the two files that already say
it: `detection/taxonomy.py` groups Clothing Co-Parsing's pixel labels into detector classes, and the
CCP label map (`label_maps/clothing-co-parsing.json`) says which masterCategories and articleTypes each
pixel label allows. A class allows the union of its labels' paths (the taxonomy's paths through the
allowed articleTypes within the allowed masterCategories: a bag is Accessories/Bags/Handbags, not Free
Items/Bags/Handbags). A class is left unconstrained (None) when one of its labels allows nothing the
taxonomy can express (ignored by the map as too vague, like `accessories`, or absent from a small
taxonomy): constraining it would force those garments into their neighbours' types.

`DetectorPrior` is the serving policy (GARMENT_DETECTOR_PRIOR): off, hard (only allowed paths can
win) or soft:<weight> (paths outside the allowed set have their probability multiplied by <weight>
before the best path is chosen), applied to detections scoring at least `min_score`, and only to the
garments of images the classifier's kind gate reads as one of `kinds` (GARMENT_DETECTOR_PRIOR_KINDS;
default street: the detector learnt its classes on street photos of people, and on a phone photo of a
T-shirt lying on a bed it calls the shirt a dress; bench/photo_garments.py).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping, Sequence

from detection.taxonomy import CCP_GROUPS

from .label_map import LabelMap, UnresolvableLabel
from .taxonomy import HIERARCHY_LEVELS, Taxonomy

CCP_LABEL_MAP = Path(__file__).parent / "label_maps" / "clothing-co-parsing.json"


TaxonomyPath = tuple[str, str, str]  # masterCategory, subCategory, articleType


def label_paths(allowed: Mapping[str, Sequence[str]], taxonomy: Taxonomy) -> set[TaxonomyPath]:
    """The taxonomy's paths a resolved label-map entry allows at every level."""
    return {path for path in taxonomy.paths
            if all(path[i] in allowed.get(level, (path[i],)) for i, level in enumerate(HIERARCHY_LEVELS))}


def allowed_paths(taxonomy: Taxonomy, label_map: LabelMap | None = None,
                  groups: Mapping[str, Sequence[str]] = CCP_GROUPS) -> dict[str, frozenset[TaxonomyPath] | None]:
    """Detector class -> the paths of `taxonomy` it allows; None: unconstrained."""
    label_map = label_map or LabelMap.load(CCP_LABEL_MAP)
    out = {}
    for detector_class, members in groups.items():
        union: set[TaxonomyPath] | None = set()
        for label in members:
            try:
                allowed = label_map.allowed(label, taxonomy)  # raises for a label neither mapped nor ignored
            except UnresolvableLabel:
                allowed = None
            if allowed is None or "articleType" not in allowed:
                union = None
                break
            union |= label_paths(allowed, taxonomy)
        out[detector_class] = frozenset(union) if union else None
    return out


def allowed_article_types(taxonomy: Taxonomy, label_map: LabelMap | None = None,
                          groups: Mapping[str, Sequence[str]] = CCP_GROUPS) -> dict[str, frozenset[str] | None]:
    """Detector class -> the articleTypes of its allowed paths; None: unconstrained."""
    return {detector_class: None if paths is None else frozenset(path[2] for path in paths)
            for detector_class, paths in allowed_paths(taxonomy, label_map, groups).items()}


@dataclasses.dataclass(frozen=True)
class DetectorPrior:
    mode: str = "off"  # off | hard | soft
    weight: float = 0.0  # factor on the probability of paths outside the allowed set (hard: 0)
    min_score: float = 0.0  # detections scoring less are not used as evidence
    allowed: Mapping[str, frozenset[TaxonomyPath] | None] = dataclasses.field(default_factory=dict)  # per detector class
    # The kinds of image (the classifier's kind gate on the whole image) whose garments the prior
    # constrains; None: every garment.
    kinds: frozenset[str] | None = None

    @classmethod
    def parse(cls, spec: str, taxonomy: Taxonomy, min_score: float = 0.0,
              kinds: str | frozenset[str] | None = None) -> "DetectorPrior":
        """`off`, `hard` or `soft:<weight>` with 0 < weight < 1; `kinds` as parse_kinds reads it."""
        spec = spec.strip().lower()
        kinds = parse_kinds(kinds) if isinstance(kinds, str) else kinds
        if spec == "off":
            return cls()
        if spec == "hard":
            return cls("hard", 0.0, min_score, allowed_paths(taxonomy), kinds)
        if spec.startswith("soft:"):
            weight = float(spec.split(":", 1)[1])
            if not 0.0 < weight < 1.0:
                raise ValueError(f"soft prior weight must be in (0, 1), got {weight}")
            return cls("soft", weight, min_score, allowed_paths(taxonomy), kinds)
        raise ValueError(f"detector prior must be off, hard or soft:<weight>, got {spec!r}")

    @property
    def name(self) -> str:
        if self.mode == "off":
            return "off"
        base = "hard" if self.mode == "hard" else f"soft:{self.weight:g}"
        base = base if not self.min_score else f"{base}@{self.min_score:g}"
        return base if self.kinds is None else f"{base}/{'+'.join(sorted(self.kinds))}"

    def for_detection(self, label: str | None, score: float | None) -> frozenset[TaxonomyPath] | None:
        """The paths a detection allows under this policy; None: decode unconstrained (which images'
        garments it holds for is the classifier's kind gate to read: allowed_where)."""
        if self.mode == "off" or label is None or score is None or score < self.min_score:
            return None
        return self.allowed.get(label)


KINDS = ("catalogue", "photo", "street")  # the kinds of image a classifier bundle trains on and its gate reads


def allowed_where(allowed: Sequence[frozenset[TaxonomyPath] | None], read: Sequence[str] | None, kinds: frozenset[str],
                  whole_image_rows: Sequence[int] | None = None) -> list[frozenset[TaxonomyPath] | None]:
    """`allowed` kept where the whole image was read (`read[whole_image_rows[i]]`; without rows, each
    row is its own image) as one of `kinds`, None (unconstrained) elsewhere; all of it kept when nothing
    read the images (a bundle without a kind gate)."""
    if read is None:
        return list(allowed)
    rows = range(len(allowed)) if whole_image_rows is None else whole_image_rows
    return [paths if read[row] in kinds else None for paths, row in zip(allowed, rows)]


def parse_kinds(spec: str) -> frozenset[str] | None:
    """GARMENT_DETECTOR_PRIOR_KINDS: comma-separated kinds (`street`, `street,photo`), or `all`: None."""
    spec = spec.strip().lower()
    if spec == "all":
        return None
    kinds = frozenset(k.strip() for k in spec.split(",") if k.strip())
    if not kinds or kinds - set(KINDS):
        raise ValueError(f"kinds of image must be `all` or some of {', '.join(KINDS)}, got {spec!r}")
    return kinds
