"""Feature heads: a task's served probabilities mixed with a logistic regression on the pooled features.

The network's heads were trained jointly with every other task, on augmented images, for as long as the
2-core budget allowed. A multinomial logistic regression fitted to convergence on the pooled trunk
features of the bundle's un-augmented training images (the mirror view, as served) reads some tasks
better: for catalogue gender it is a second opinion that lifts the served figure by a point
(bench/gender_head_probe.py). A bundle with feature heads (`feature_heads.npz`) keeps, per task, the
standardisation of the features, the regression's weights and the mixing weight w: the served
probabilities are (1 - w) x the model's (after the neighbour vote) + w x the regression's. C and w are
chosen on the catalogue validation split (classification.fit_feature_heads). The heads name themselves in
the tag versions (`+heads-<version>`); embeddings are unchanged.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
from pathlib import Path
from typing import Mapping

import numpy as np

from common.bundles import BundleError

HEADS_FILE = "feature_heads.npz"


@dataclasses.dataclass(frozen=True)
class FeatureHead:
    task: str
    mean: np.ndarray  # (features,) standardisation fitted on the training features
    scale: np.ndarray  # (features,)
    coef: np.ndarray  # (classes, features); a class no training image had never wins (intercept below)
    intercept: np.ndarray  # (classes,)
    weight: float  # the regression's share of the served probabilities

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        logits = ((np.asarray(features, np.float32) - self.mean) / self.scale) @ self.coef.T + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class FeatureHeads:
    heads: tuple[FeatureHead, ...]

    @functools.cached_property
    def version(self) -> str:
        digest = hashlib.sha256()
        for head in self.heads:
            digest.update(head.task.encode())
            for array in (head.mean, head.scale, head.coef, head.intercept, np.float64(head.weight)):
                digest.update(np.ascontiguousarray(np.asarray(array, np.float32)).tobytes())
        return digest.hexdigest()[:12]

    def mix(self, probs: Mapping[str, np.ndarray], features: np.ndarray) -> dict[str, np.ndarray]:
        out = dict(probs)
        for head in self.heads:
            if head.task in out and len(features):
                out[head.task] = ((1 - head.weight) * out[head.task]
                                  + head.weight * head.probabilities(features)).astype(np.float32)
        return out

    def save(self, folder: Path) -> Path:
        arrays = {"tasks": np.array([head.task for head in self.heads])}
        for head in self.heads:
            arrays |= {f"{head.task}/mean": head.mean.astype(np.float32), f"{head.task}/scale": head.scale.astype(np.float32),
                       f"{head.task}/coef": head.coef.astype(np.float32),
                       f"{head.task}/intercept": head.intercept.astype(np.float32),
                       f"{head.task}/weight": np.float64(head.weight)}
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        path = Path(folder) / HEADS_FILE
        path.write_bytes(buffer.getvalue())
        return path


def load_heads(folder: str | Path, expected_version: str | None = None) -> FeatureHeads | None:
    """The bundle's feature heads, or None when it has none; refused when the file's content is not the
    `expected_version` the manifest recorded (a corrupt or replaced file)."""
    path = Path(folder) / HEADS_FILE
    if not path.is_file():
        return None
    with np.load(path) as arrays:
        heads = FeatureHeads(tuple(
            FeatureHead(task, arrays[f"{task}/mean"], arrays[f"{task}/scale"], arrays[f"{task}/coef"],
                        arrays[f"{task}/intercept"], float(arrays[f"{task}/weight"]))
            for task in (str(t) for t in arrays["tasks"])))
    if expected_version is not None and heads.version != expected_version:
        raise BundleError(f"{path}: version {heads.version} does not match the manifest's {expected_version} "
                          "(corrupt or replaced file)")
    return heads


def fit_head(task: str, features: np.ndarray, labels: np.ndarray, classes: int, c: float, weight: float,
             seed: int = 0) -> FeatureHead:
    """A multinomial logistic regression (L2, inverse strength `c`) on standardised `features` for the rows
    whose label is known (labels >= 0)."""
    from sklearn.linear_model import LogisticRegression

    known = labels >= 0
    x, y = np.asarray(features, np.float32)[known], labels[known]
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 1e-6, scale, 1.0).astype(np.float32)
    model = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit((x - mean) / scale, y)
    coef = np.zeros((classes, x.shape[1]), np.float32)
    intercept = np.full(classes, -1e4, np.float32)
    if len(model.classes_) == 2:  # sklearn keeps one row for two classes: the second's logit against the first's 0
        coef[model.classes_[1]], intercept[model.classes_[1]] = model.coef_[0], model.intercept_[0]
        intercept[model.classes_[0]] = 0.0
    else:
        coef[model.classes_], intercept[model.classes_] = model.coef_, model.intercept_
    return FeatureHead(task, mean.astype(np.float32), scale, coef, intercept, float(weight))
