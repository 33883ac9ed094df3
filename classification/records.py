"""One record format for every source of labelled training and evaluation images.

A catalogue row knows every task's label; a phone photo labelled "Pants" only says the articleType is
one of {Trousers, Jeans, Track Pants, ...} and nothing about colour or season. So a record keeps, per
task, the set of labels it allows (one label for a catalogue row); a task it says nothing about is
absent, and is neither trained nor scored for that image.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping, Sequence

from .catalogue import CatalogueRecord
from .taxonomy import TASKS

KINDS = ("catalogue", "photo", "street")


@dataclasses.dataclass(frozen=True)
class LabelledImage:
    id: str
    image_path: Path
    kind: str  # catalogue thumbnail, phone photo of a garment, or garment crop of a street photo
    allowed: Mapping[str, tuple[str, ...]]  # task -> labels this image allows
    source_label: str = ""  # the label as the source wrote it (per-label reports)
    box: tuple[int, int, int, int] | None = None  # x1, y1, x2, y2 crop of image_path, in pixels
    group: str = ""  # what must not straddle a train/validation split (a sender, a street photo)

    def label(self, task: str) -> str | None:
        """The single label of `task`, or None when the record allows several or none."""
        labels = self.allowed.get(task, ())
        return labels[0] if len(labels) == 1 else None


def from_catalogue(records: Sequence[CatalogueRecord]) -> list[LabelledImage]:
    return [LabelledImage(r.id, r.image_path, "catalogue", {t: (r[t],) for t in TASKS if r.get(t)},
                          source_label=r.get("articleType") or "", group=r.id) for r in records]
