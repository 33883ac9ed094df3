"""Input pipeline: labelled images decoded once into memory, served as a keras.utils.PyDataset.

Numpy + PIL only, so the same pipeline feeds the TensorFlow and the torch backends.
"""
from __future__ import annotations

import math
import pickle
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Mapping, Sequence

import keras
import numpy as np
from PIL import Image
from tqdm import tqdm

from common.images import load_rgb

from .augment import PhotoAugmenter
from .preprocess import letterbox
from .records import LabelledImage
from .taxonomy import TASKS, Taxonomy


def encode_allowed(records: Sequence[LabelledImage], taxonomy: Taxonomy) -> dict[str, np.ndarray]:
    """Task -> (N, classes) uint8 multi-hot of the labels each record allows (all zero: unknown)."""
    out = {task: np.zeros((len(records), taxonomy.num_classes(task)), np.uint8) for task in TASKS}
    for row, record in enumerate(records):
        for task, labels in record.allowed.items():
            for label in labels:
                index = taxonomy.index(task, label)
                if index >= 0:
                    out[task][row, index] = 1
    return out


def load_image(record: LabelledImage, max_side: int | None = None) -> np.ndarray:
    """The record's pixels (its crop, when it has a box), shrunk so the longer side is <= max_side."""
    image = load_rgb(record.image_path)
    if record.box is not None:
        x1, y1, x2, y2 = record.box
        image = image[y1:y2, x1:x2]
    h, w = image.shape[:2]
    if max_side and max(h, w) > max_side:
        scale = max_side / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
    return np.ascontiguousarray(image)


def image_cache_path(folder: Path, kind: str, max_side: int | None, count: int) -> Path:
    """Where a run keeps the decoded images of one kind, named by the run's --max-side (catalogue
    thumbnails are kept whole whatever it is); training and the embedding head share them."""
    return Path(folder) / f"images-{kind}-{max_side}-{count}.pkl"


def load_images(records: Sequence[LabelledImage], max_side: int | None = None, desc: str = "decoding",
                cache: Path | None = None) -> list[np.ndarray]:
    """Decode every record (4 threads: JPEG decoding releases the GIL), optionally cached as a pickle."""
    if cache is not None and cache.is_file():
        with open(cache, "rb") as handle:
            return pickle.load(handle)
    with ThreadPoolExecutor(max_workers=4) as pool:
        images = list(tqdm(pool.map(lambda r: load_image(r, max_side), records), total=len(records),
                           desc=desc, leave=False))
    if cache is not None:
        with open(cache, "wb") as handle:
            pickle.dump(images, handle, protocol=pickle.HIGHEST_PROTOCOL)
    return images


def label_balance_weights(records: Sequence[LabelledImage], power: float,
                          kinds: Sequence[str] = ("photo", "street")) -> np.ndarray:
    """A draw weight per record: 1 / (records of its kind with its source label) ** power for the given
    kinds (0: as they come, 1: every label drawn as often, 0.5 between), 1 for the others. The photo
    kinds are scored as a mean over their labels, and their rare garments (a scarf, a cape) are tagged
    for users as often as the common ones; catalogue rows keep their natural frequencies."""
    counts = Counter((r.kind, r.source_label) for r in records)
    return np.asarray([counts[(r.kind, r.source_label)] ** -power if r.kind in kinds else 1.0 for r in records])


class MixedBatches(keras.utils.PyDataset):
    """Batches of (uint8 images, {task: multi-hot}) from several kinds of image.

    Each epoch draws `per_epoch[kind]` records of each kind (all of them when None; with replacement
    only when asking for more than there are), shuffled together. With `draw_weights` (one per record)
    a kind's draw is weighted by them, with replacement, `per_epoch[kind]` or as many as the kind has
    (see label_balance_weights). With an augmenter every image is augmented as its kind needs;
    without, it is only letterboxed (validation).
    """

    def __init__(self, images: Sequence[np.ndarray], labels: Mapping[str, np.ndarray], kinds: Sequence[str],
                 input_size: tuple[int, int], batch_size: int = 48, augmenter: PhotoAugmenter | None = None,
                 per_epoch: Mapping[str, int | None] | None = None, seed: int = 0,
                 draw_weights: np.ndarray | None = None, **kwargs):
        super().__init__(**kwargs)
        self.images, self.labels, self.kinds = images, labels, np.asarray(kinds)
        self.input_size, self.batch_size, self.augmenter = input_size, batch_size, augmenter
        self.rng = np.random.default_rng(seed)
        self.by_kind = {kind: np.flatnonzero(self.kinds == kind) for kind in dict.fromkeys(kinds)}
        self.per_epoch = {kind: (per_epoch or {}).get(kind) for kind in self.by_kind}
        self.draw_weights = None if draw_weights is None else np.asarray(draw_weights, np.float64)
        self.order = self._draw()

    def _draw(self) -> np.ndarray:
        parts = []
        for kind, rows in self.by_kind.items():
            n = self.per_epoch[kind]
            weights = None if self.draw_weights is None else self.draw_weights[rows]
            if weights is not None and not np.allclose(weights, weights[0]):
                parts.append(self.rng.choice(rows, n or len(rows), replace=True, p=weights / weights.sum()))
            elif n is None or n == len(rows):
                parts.append(rows)
            else:
                parts.append(self.rng.choice(rows, n, replace=n > len(rows)))
        order = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        if self.augmenter is not None:
            self.rng.shuffle(order)
        return order

    def __len__(self) -> int:
        return math.ceil(len(self.order) / self.batch_size)

    def __getitem__(self, index: int):
        rows = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        if self.augmenter is None:
            x = np.stack([letterbox(self.images[i], *self.input_size) for i in rows])
        else:
            x = np.stack([self.augmenter(self.images[i], self.kinds[i]) for i in rows])
        return x, {task: self.labels[task][rows].astype(np.float32) for task in TASKS}

    def on_epoch_end(self):
        if self.augmenter is not None:
            self.order = self._draw()
