"""Phone photos of one garment as detector training records: the box and mask found by GrabCut.

The detector learns its classes on street photos of people; sent a phone photo of a shirt lying on a
bed, it is often unsure there is a garment at all. Photos of one garment (the clothing-dataset layout:
`images.csv` with `image,sender_id,label` + `images/<image>.jpg`) show what such photos look like, but
carry only a label, no box. The garment is most of the picture and the background is a bed, a floor or
a wall, so GrabCut started from a rectangle just inside the border (everything outside it background)
separates the two well; the largest foreground region, holes filled, is the garment's mask and its box.
A label map file (`label_maps/clothing-dataset.json`) names the detector class of each photo label.
"""
from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np
from PIL import Image
from scipy import ndimage

from common.images import load_rgb

from .records import DetectionRecord, Instance, box_of

log = logging.getLogger(__name__)
LABEL_MAPS = Path(__file__).resolve().parent / "label_maps"
# Photo records get ids above every CCP photo's (4-digit file names), so the two never collide.
PHOTO_ID_BASE = 1_000_000
# A mask outside these shares of the photo is GrabCut failing (a speck, or the whole frame), not a garment.
MASK_SHARE_RANGE = (0.05, 0.97)
EXIF_ORIENTATION, QUARTER_TURNS = 0x0112, (5, 6, 7, 8)


def read_photo_label_map(path: str | Path, classes: Sequence[str]) -> tuple[dict[str, int], set[str]]:
    """The file's labels -> 1-based detector class indices, and the labels it ignores."""
    data = json.loads(Path(path).read_text())
    unknown = sorted(c for c in data["labels"].values() if c not in classes)
    if unknown:
        raise ValueError(f"{path}: classes {unknown} are not detector classes ({', '.join(classes)})")
    return {label: classes.index(name) + 1 for label, name in data["labels"].items()}, set(data.get("ignore", []))


def garment_mask(image: np.ndarray, inset: float = 0.03, side: int = 256, iterations: int = 5) -> np.ndarray | None:
    """The mask of the one garment in an RGB photo, or None where GrabCut finds no plausible one.
    Run on a copy with the shorter side at most `side` pixels (0.4 s a photo on one core), then scaled back."""
    height, width = image.shape[:2]
    scale = min(1.0, side / min(height, width))
    small = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
    h, w = small.shape[:2]
    dx, dy = max(1, round(w * inset)), max(1, round(h * inset))
    labels = np.zeros((h, w), np.uint8)
    background, foreground = np.zeros((1, 65)), np.zeros((1, 65))
    cv2.grabCut(np.ascontiguousarray(small[:, :, ::-1]), labels, (dx, dy, w - 2 * dx, h - 2 * dy),
                background, foreground, iterations, cv2.GC_INIT_WITH_RECT)
    found = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
    regions, count = ndimage.label(found)
    if count == 0:
        return None
    sizes = ndimage.sum(found, regions, range(1, count + 1))
    garment = ndimage.binary_fill_holes(regions == 1 + int(np.argmax(sizes)))
    mask = cv2.resize(garment.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)
    low, high = MASK_SHARE_RANGE
    return mask if low <= mask.mean() <= high else None


def read_garment_photos(root: str | Path, label_map: str | Path, classes: Sequence[str],
                        image_ids: Iterable[str] | None = None) -> list[DetectionRecord]:
    """One record per photo whose label the map names (and, with `image_ids`, only those photos: e.g. a
    classifier bundle's training senders, so its held-out senders stay unseen). Each record's single
    instance is computed when loaded; a photo where GrabCut fails loads with no instance."""
    root = Path(root)
    class_of, ignored = read_photo_label_map(label_map, classes)
    wanted = set(image_ids) if image_ids is not None else None
    records, unknown = [], set()
    with open(root / "images.csv", newline="", encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            label, path = row["label"].strip(), root / "images" / f"{row['image']}.jpg"
            if (wanted is not None and row["image"] not in wanted) or label in ignored or not path.is_file():
                continue
            if label not in class_of:
                unknown.add(label)
                continue
            records.append(_record(PHOTO_ID_BASE + len(records), path, class_of[label]))
    if unknown:
        raise ValueError(f"{label_map}: no class for the labels {sorted(unknown)} (map them or ignore them)")
    log.info("%s: %d garment photos", root, len(records))
    return records


def _record(image_id: int, path: Path, category: int) -> DetectionRecord:
    with Image.open(path) as image:
        width, height = image.size
        if image.getexif().get(EXIF_ORIENTATION) in QUARTER_TURNS:  # load_rgb turns the pixels upright
            width, height = height, width

    def load() -> list[Instance]:
        mask = garment_mask(load_rgb(path))
        return [] if mask is None else [Instance(category, box_of(mask), mask)]

    return DetectionRecord(image_id, path, width, height, load)
