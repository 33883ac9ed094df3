"""Readers for real-photo datasets into LabelledImage records, through a label map.

- Labelled phone photos in the clothing-dataset layout: `images.csv` (`image,sender_id,label,kids`)
  + `images/<image>.jpg`. Split by sender: one person's photos share a room, a camera and often a
  background, so a photo-level split would flatter the model.
- Garment crops from Clothing Co-Parsing street photos: one crop per connected region of a garment's
  pixel label (the instances the detector trains on), labelled with the raw CCP label.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from .label_map import LabelMap, UnresolvableLabel
from .records import LabelledImage
from .taxonomy import Taxonomy

log = logging.getLogger(__name__)
# Context around a garment's box, a fraction of its size on every side: what the pipeline crops around
# a detection (detection.inference.crop_detection's padding) and what held-out crops are scored with.
STREET_CROP_MARGIN = 0.1


def resolver(label_map: LabelMap, taxonomy: Taxonomy):
    """label -> allowed sets (None: skip), cached; labels the taxonomy cannot express are skipped
    with one warning each, labels the map does not know raise."""
    cache = {}

    def resolve(label: str):
        if label not in cache:
            try:
                cache[label] = label_map.allowed(label, taxonomy)
            except UnresolvableLabel as error:
                log.warning("%s; its images are skipped", error)
                cache[label] = None
        return cache[label]
    return resolve


def read_labelled_photos(root: str | Path, label_map: LabelMap, taxonomy: Taxonomy) -> list[LabelledImage]:
    root = Path(root)
    resolve = resolver(label_map, taxonomy)
    records, skipped = [], 0
    with open(root / "images.csv", newline="", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            path = root / "images" / f"{row['image']}.jpg"
            allowed = resolve(row["label"].strip())
            if allowed is None or not path.is_file():
                skipped += 1
                continue
            records.append(LabelledImage(row["image"], path, "photo", allowed, row["label"].strip(),
                                         group=f"sender:{row.get('sender_id', '')}"))
    log.info("%s: %d photos, %d skipped (ignored label or missing file)", root, len(records), skipped)
    return records


def split_by_group(records: Sequence[LabelledImage], val_fraction: float = 0.2, seed: int = 1234) -> dict[str, list[str]]:
    """Record ids for train and val such that no group (a sender) is on both sides; groups are
    shuffled and taken for validation until it holds `val_fraction` of the records."""
    groups = sorted({r.group for r in records})
    np.random.default_rng(seed).shuffle(groups)
    sizes = {g: 0 for g in groups}
    for r in records:
        sizes[r.group] += 1
    val_groups, taken = set(), 0
    for g in groups:
        if taken >= val_fraction * len(records):
            break
        val_groups.add(g)
        taken += sizes[g]
    return {"train": [r.id for r in records if r.group not in val_groups],
            "val": [r.id for r in records if r.group in val_groups]}


@dataclasses.dataclass(frozen=True)
class StreetInstance:
    """One garment region of a CCP photo, before it is cut: its record (box = the region's own box)
    and the photo's size, which bounds any context added around it."""
    record: LabelledImage
    width: int
    height: int


def read_street_instances(root: str | Path, label_map: LabelMap, taxonomy: Taxonomy, min_side: int = 24,
                          min_area_fraction: float = 0.001) -> list[StreetInstance]:
    """Every annotated CCP photo's garments: one per connected region of each mapped label (closed
    and split as the detector's instances), regions smaller than `min_side` pixels dropped. `group`
    is the photo id."""
    from detection.records import ccp_label_names, read_ccp  # the detector's instance rules

    root = Path(root)
    resolve = resolver(label_map, taxonomy)
    # Every label the map does not ignore becomes instances (one class per raw label); each is
    # resolved when first seen.
    candidates = {value: name for value, name in enumerate(ccp_label_names(root)) if name and name not in label_map.ignore}
    instances = []
    for photo in read_ccp(root, min_area_fraction, pixel_to_class={v: v for v in candidates}):
        for k, instance in enumerate(photo.instances()):
            x1, y1, x2, y2 = instance.box
            name = candidates[instance.category]
            if min(x2 - x1, y2 - y1) < min_side or resolve(name) is None:
                continue
            record = LabelledImage(f"{photo.image_id}-{k}", photo.image_path, "street", resolve(name), name,
                                   tuple(instance.box), group=f"photo:{photo.image_id}")
            instances.append(StreetInstance(record, photo.width, photo.height))
    return instances


def cut_street_crop(instance: StreetInstance, margin: float = STREET_CROP_MARGIN) -> LabelledImage:
    """The instance's record with its box grown by `margin` of its size on every side (context)."""
    x1, y1, x2, y2 = instance.record.box
    dx, dy = (x2 - x1) * margin, (y2 - y1) * margin
    box = (int(max(0, x1 - dx)), int(max(0, y1 - dy)), int(min(instance.width, x2 + dx)),
           int(min(instance.height, y2 + dy)))
    return dataclasses.replace(instance.record, box=box)


def read_street_crops(root: str | Path, label_map: LabelMap, taxonomy: Taxonomy, margin: float = STREET_CROP_MARGIN,
                      min_side: int = 24, min_area_fraction: float = 0.001) -> list[LabelledImage]:
    """Garment crops of every annotated CCP photo (read_street_instances), each cut with `margin`."""
    return [cut_street_crop(i, margin) for i in read_street_instances(root, label_map, taxonomy, min_side,
                                                                      min_area_fraction)]


def split_street_crops(records: Sequence[LabelledImage], split_file: str | Path | None, val_fraction: float = 0.15,
                       seed: int = 1234) -> dict[str, list[str]]:
    """Use the detector's photo split (`{"train": [photo ids], "val": [...]}`) when given, so the
    crops held out are from photos the detector never trained on either; else split by photo."""
    if split_file is None:
        return split_by_group(records, val_fraction, seed)
    photos = json.loads(Path(split_file).read_text())
    val = {f"photo:{int(i)}" for i in photos["val"]}
    return {"train": [r.id for r in records if r.group not in val], "val": [r.id for r in records if r.group in val]}
