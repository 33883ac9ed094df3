"""Load a classifier bundle once and tag batches of RGB images of any size."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import keras
import numpy as np

from . import runtime
from .bundle import load_bundle
from .decoding import HierarchyDecoder
from .preprocess import preprocess_batch
from .taxonomy import HIERARCHY_LEVELS, MODEL_GROUPS, TASKS


class Classifier:
    def __init__(self, bundle_dir: str | Path, batch_size: int = 64, input_size: tuple[int, int] | None = None):
        self.bundle_dir = Path(bundle_dir)
        self.model, self.taxonomy, self.manifest = load_bundle(self.bundle_dir, input_size=input_size)
        self.input_size = tuple(input_size or self.manifest["model"]["input_size"])
        self.decoder = HierarchyDecoder(self.taxonomy)
        self.batch_size = batch_size
        self.versions = {group: f"{self.manifest['name']}:{self.manifest['version']}/{group}" for group in MODEL_GROUPS}

    def predict_proba(self, images: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Softmax outputs per task, (N, classes) each, computed in batches."""
        batch = preprocess_batch(images, self.input_size)
        return self.predict_proba_preprocessed(batch)

    def predict_proba_preprocessed(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        parts = {task: [] for task in TASKS}
        for start in range(0, len(batch), self.batch_size):
            with runtime.no_grad():
                outputs = self.model(batch[start:start + self.batch_size], training=False)
            for task in TASKS:
                parts[task].append(keras.ops.convert_to_numpy(outputs[task]).astype(np.float32))
        if not len(batch):
            return {task: np.zeros((0, self.taxonomy.num_classes(task)), np.float32) for task in TASKS}
        return {task: np.concatenate(chunks) for task, chunks in parts.items()}

    def predict(self, images: Sequence[np.ndarray]) -> list[dict]:
        """One result per image: every task's label, confidence and top-3; the category path decoded jointly."""
        if not len(images):
            return []
        probs = self.predict_proba(images)
        return self.describe(probs)

    def describe(self, probs: dict[str, np.ndarray]) -> list[dict]:
        paths = self.decoder.decode(probs)
        results = []
        for row, path in enumerate(paths):
            result = {"category_path_confidence": path["path_confidence"], "category_top_paths": path["top_paths"]}
            for task in TASKS:
                p = probs[task][row]
                top = np.argsort(-p)[:3]
                chosen = path["levels"][task]["index"] if task in HIERARCHY_LEVELS else int(top[0])
                result[task] = {
                    "label": self.taxonomy.labels[task][chosen],
                    "confidence": float(p[chosen]),
                    "top3": [{"label": self.taxonomy.labels[task][i], "confidence": float(p[i])} for i in top],
                }
            results.append(result)
        return results
