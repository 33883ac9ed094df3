"""Input pipeline: a catalogue decoded once into uint8 arrays, served as a keras.utils.PyDataset.

Numpy + PIL only, so the same pipeline feeds the TensorFlow and the torch backends.
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import keras
import numpy as np
from tqdm import tqdm

from common.images import load_rgb

from .catalogue import CatalogueRecord
from .preprocess import PAD_VALUE, preprocess_batch
from .taxonomy import TASKS, Taxonomy


def encode_labels(records: Sequence[CatalogueRecord], taxonomy: Taxonomy) -> np.ndarray:
    """(N, len(TASKS)) int32 class indices, -1 where a label is missing or unknown."""
    return np.asarray([[taxonomy.index(t, r.get(t)) for t in TASKS] for r in records], dtype=np.int32).reshape(-1, len(TASKS))


def load_images(records: Sequence[CatalogueRecord], input_size: tuple[int, int], desc: str = "decoding") -> np.ndarray:
    def load(record):
        return preprocess_batch([load_rgb(record.image_path)], input_size)[0]

    out = np.empty((len(records), *input_size, 3), dtype=np.uint8)
    with ThreadPoolExecutor(max_workers=4) as pool:
        for i, image in enumerate(tqdm(pool.map(load, records), total=len(records), desc=desc, leave=False)):
            out[i] = image
    return out


def class_weights(labels: np.ndarray, num_classes: int, power: float = 0.5, max_weight: float = 10.0) -> np.ndarray:
    """Inverse-frequency weights softened by `power`, clipped, normalised to mean 1 over the samples."""
    known = labels[labels >= 0]
    counts = np.bincount(known, minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, (counts.max() / np.maximum(counts, 1)) ** power, 1.0)
    weights = np.minimum(weights, max_weight)
    if len(known):
        weights /= weights[known].mean()
    return weights.astype(np.float32)


class CatalogueBatches(keras.utils.PyDataset):
    """Batches of (uint8 images, {task: labels}) with optional flip/shift/brightness augmentation."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int = 64, shuffle: bool = False,
                 augment: bool = False, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        self.rng = np.random.default_rng(seed)
        self.order = np.arange(len(images))
        if shuffle:
            self.rng.shuffle(self.order)

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, index: int):
        idx = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        x = self.images[idx]
        if self.augment:
            x = self._augment(x)
        y = {task: self.labels[idx, i] for i, task in enumerate(TASKS)}
        return x, y

    def on_epoch_end(self):
        if self.shuffle:
            self.rng.shuffle(self.order)

    def _augment(self, batch: np.ndarray) -> np.ndarray:
        # Colour is a label (baseColour), so only geometry and a mild brightness change.
        out = batch.copy()
        n, h, w, _ = out.shape
        flip = self.rng.random(n) < 0.5
        out[flip] = out[flip, :, ::-1]
        pad = 4
        padded = np.pad(out, ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=PAD_VALUE)
        dy, dx = self.rng.integers(0, 2 * pad + 1, size=(2, n))
        for i in range(n):
            out[i] = padded[i, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        gain = self.rng.uniform(0.9, 1.1, size=(n, 1, 1, 1))
        return np.clip(out * gain, 0, 255).astype(np.uint8)
