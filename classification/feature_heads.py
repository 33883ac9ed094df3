"""Feature heads: a task's served probabilities mixed with a logistic regression on the pooled features.

The network's heads were trained jointly with every other task, on augmented images, for as long as the
2-core budget allowed. A multinomial logistic regression fitted to convergence on the pooled trunk
features of the bundle's un-augmented catalogue training thumbnails (the mirror view, as served) reads
some tasks better: for catalogue gender it is a second opinion that lifts the served figure by a point.
A bundle with feature heads (`feature_heads.npz`) keeps, per task, the standardisation of the features,
the regression's weights and the mixing weight w: the served probabilities are (1 - w) x the model's
(after the neighbour vote) + w x the regression's. C and w are chosen on the catalogue validation split
(classification.fit_feature_heads). The heads name themselves in the tag versions (`+heads-<version>`);
embeddings are unchanged.

A gated head is trusted only as far as the image looks like a catalogue thumbnail: its w is scaled by the
probability the bundle's kind gate (a logistic regression telling its training kinds apart on the same
features) gives the catalogue. The category heads need it: fitted on thumbnails alone they lift the
catalogue's articleType and cost phone photos and street crops several points when mixed in everywhere.

A source-label head does the same for another kind of image, in that source's own labels: a regression on
the bundle's training phone photos (or street crops) predicting their label (Pants, Shirt, ...) sets how much
of the articleType mass each label's allowed articleTypes get, the served probabilities keeping the shape
inside each set; its weight is scaled by the gate's probability of that kind.
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
    gated: bool = False  # the share scaled by the kind gate's catalogue probability (FeatureHeads.gate)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        logits = ((np.asarray(features, np.float32) - self.mean) / self.scale) @ self.coef.T + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class KindGate:
    """Which kind of image (catalogue thumbnail, phone photo, street crop) features come from: a logistic
    regression on the bundle's training images of each kind, read as the probability of the catalogue."""
    kinds: tuple[str, ...]
    regression: FeatureHead  # one class per kind, in that order

    def catalogue_probability(self, features: np.ndarray) -> np.ndarray:
        return self.probability(features, "catalogue")

    def probability(self, features: np.ndarray, kind: str) -> np.ndarray:
        return self.regression.probabilities(features)[:, self.kinds.index(kind)]

    def most_probable(self, features: np.ndarray) -> list[str]:
        """Each image's likeliest kind."""
        return [self.kinds[i] for i in self.regression.probabilities(features).argmax(axis=1)]


@dataclasses.dataclass(frozen=True)
class SourceLabelHead:
    """A regression reading one kind's source labels (a phone photo's "Pants"), mixed into articleType by the
    gate's probability of that kind."""
    kind: str  # the kind gate's name for the images it reads ("photo", "street")
    labels: tuple[str, ...]  # the source's labels, the regression's classes
    allowed: np.ndarray  # (labels, articleTypes) bool: the articleTypes each label allows (its label map)
    regression: FeatureHead
    weight: float

    def article_probabilities(self, article_probs: np.ndarray, features: np.ndarray) -> np.ndarray:
        return label_mass(self.regression.probabilities(features), self.allowed, article_probs)


def label_mass(label_probs: np.ndarray, allowed: np.ndarray, article_probs: np.ndarray) -> np.ndarray:
    """Each label's probability spread over the articleTypes it allows, in the proportions of
    `article_probs`: h(a) = sum over labels l allowing a of q(l) p(a) / p(allowed set of l)."""
    allowed = np.asarray(allowed, np.float32)
    set_mass = article_probs @ allowed.T  # (images, labels)
    share = label_probs / np.maximum(set_mass, 1e-9)
    return (article_probs * (share @ allowed)).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class FeatureHeads:
    heads: tuple[FeatureHead, ...]
    gate: KindGate | None = None  # needed by gated heads and source-label heads
    label_heads: tuple[SourceLabelHead, ...] = ()  # mixed into articleType after the task heads

    def __post_init__(self):
        if self.gate is None and (self.label_heads or any(head.gated for head in self.heads)):
            raise ValueError("gated feature heads and source-label heads need a kind gate")
        unknown = {head.kind for head in self.label_heads} - set(self.gate.kinds if self.gate else ())
        if unknown:
            raise ValueError(f"source-label heads for kinds the gate does not know: {sorted(unknown)}")

    @functools.cached_property
    def version(self) -> str:
        digest = hashlib.sha256()

        def add(*arrays):
            for array in arrays:
                digest.update(np.ascontiguousarray(np.asarray(array, np.float32)).tobytes())

        for head in self.heads:
            digest.update(head.task.encode() + (b"/gated" if head.gated else b""))
            add(head.mean, head.scale, head.coef, head.intercept, np.float64(head.weight))
        if self.gate is not None:
            gate = self.gate.regression
            digest.update(",".join(self.gate.kinds).encode())
            add(gate.mean, gate.scale, gate.coef, gate.intercept)
        for label_head in self.label_heads:  # none: the digest of heads made before them is unchanged
            regression = label_head.regression
            digest.update(f"labels/{label_head.kind}/{','.join(label_head.labels)}".encode())
            add(label_head.allowed, regression.mean, regression.scale, regression.coef, regression.intercept,
                np.float64(label_head.weight))
        return digest.hexdigest()[:12]

    def mix(self, probs: Mapping[str, np.ndarray], features: np.ndarray) -> dict[str, np.ndarray]:
        out = dict(probs)
        if not len(features):
            return out
        gated = any(head.gated and head.task in out for head in self.heads) or (self.label_heads and "articleType" in out)
        kinds = self.gate.regression.probabilities(features) if gated else None  # (images, kinds), read once

        def kind_share(kind: str) -> np.ndarray:
            return kinds[:, self.gate.kinds.index(kind), None]

        for head in self.heads:
            if head.task in out:
                weight = head.weight * kind_share("catalogue") if head.gated else head.weight
                out[head.task] = ((1 - weight) * out[head.task] + weight * head.probabilities(features)).astype(np.float32)
        if "articleType" in out:
            for label_head in self.label_heads:
                weight = label_head.weight * kind_share(label_head.kind)
                article = out["articleType"]
                out["articleType"] = ((1 - weight) * article
                                      + weight * label_head.article_probabilities(article, features)).astype(np.float32)
        return out

    def save(self, folder: Path) -> Path:
        arrays = {"tasks": np.array([head.task for head in self.heads])}
        for head in self.heads:
            arrays |= _regression_arrays(head.task, head) | {
                f"{head.task}/weight": np.float64(head.weight), f"{head.task}/gated": np.bool_(head.gated)}
        if self.gate is not None:
            arrays |= _regression_arrays("gate", self.gate.regression) | {"gate/kinds": np.array(self.gate.kinds)}
        if self.label_heads:
            arrays["label_heads"] = np.array([head.kind for head in self.label_heads])
        for head in self.label_heads:
            prefix = f"labels/{head.kind}"
            arrays |= _regression_arrays(prefix, head.regression) | {
                f"{prefix}/labels": np.array(head.labels), f"{prefix}/allowed": np.asarray(head.allowed, bool),
                f"{prefix}/weight": np.float64(head.weight)}
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
        gate = (KindGate(tuple(str(k) for k in arrays["gate/kinds"]), _read_regression(arrays, "gate", "kind", 1.0))
                if "gate/kinds" in arrays else None)
        heads = FeatureHeads(tuple(
            _read_regression(arrays, task, task, float(arrays[f"{task}/weight"]),
                             bool(arrays[f"{task}/gated"]) if f"{task}/gated" in arrays else False)
            for task in (str(t) for t in arrays["tasks"])), gate,
            tuple(_read_label_head(arrays, str(kind)) for kind in arrays["label_heads"]) if "label_heads" in arrays else ())
    if expected_version is not None and heads.version != expected_version:
        raise BundleError(f"{path}: version {heads.version} does not match the manifest's {expected_version} "
                          "(corrupt or replaced file)")
    return heads


def _regression_arrays(prefix: str, regression: FeatureHead) -> dict[str, np.ndarray]:
    """A regression's arrays as stored (coefficients at float16: the bundle stays compact)."""
    return {f"{prefix}/mean": regression.mean.astype(np.float32), f"{prefix}/scale": regression.scale.astype(np.float32),
            f"{prefix}/coef": regression.coef.astype(np.float16), f"{prefix}/intercept": regression.intercept.astype(np.float32)}


def _read_regression(arrays, prefix: str, task: str, weight: float, gated: bool = False) -> FeatureHead:
    return FeatureHead(task, arrays[f"{prefix}/mean"], arrays[f"{prefix}/scale"], arrays[f"{prefix}/coef"].astype(np.float32),
                       arrays[f"{prefix}/intercept"], weight, gated)


def _read_label_head(arrays, kind: str) -> SourceLabelHead:
    prefix = f"labels/{kind}"
    return SourceLabelHead(kind, tuple(str(label) for label in arrays[f"{prefix}/labels"]),
                           arrays[f"{prefix}/allowed"].astype(bool), _read_regression(arrays, prefix, kind, 1.0),
                           float(arrays[f"{prefix}/weight"]))


def fit_gate(features_by_kind: Mapping[str, np.ndarray], c: float = 0.01) -> KindGate:
    """The kind gate: a logistic regression (classes balanced) telling the kinds' features apart."""
    kinds = tuple(features_by_kind)
    if "catalogue" not in kinds or len(kinds) < 2:
        raise ValueError(f"a kind gate needs the catalogue and another kind, got {list(kinds)}")
    features = np.concatenate([features_by_kind[kind] for kind in kinds])
    labels = np.concatenate([np.full(len(features_by_kind[kind]), i) for i, kind in enumerate(kinds)])
    return KindGate(kinds, fit_head("kind", features, labels, len(kinds), c, 1.0, class_weight="balanced"))


def fit_head(task: str, features: np.ndarray, labels: np.ndarray, classes: int, c: float, weight: float,
             seed: int = 0, gated: bool = False, class_weight: str | None = None) -> FeatureHead:
    """A multinomial logistic regression (L2, inverse strength `c`) on standardised `features` for the rows
    whose label is known (labels >= 0)."""
    from sklearn.linear_model import LogisticRegression

    known = labels >= 0
    x, y = np.asarray(features, np.float32)[known], labels[known]
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 1e-6, scale, 1.0).astype(np.float32)
    model = LogisticRegression(C=c, max_iter=2000, random_state=seed, class_weight=class_weight).fit((x - mean) / scale, y)
    coef = np.zeros((classes, x.shape[1]), np.float32)
    intercept = np.full(classes, -1e4, np.float32)
    if len(model.classes_) == 2:  # sklearn keeps one row for two classes: the second's logit against the first's 0
        coef[model.classes_[1]], intercept[model.classes_[1]] = model.coef_[0], model.intercept_[0]
        intercept[model.classes_[0]] = 0.0
    else:
        coef[model.classes_], intercept[model.classes_] = model.coef_, model.intercept_
    # Kept at float16 precision, as it is stored: the bundle stays compact and serves what was chosen.
    coef = coef.astype(np.float16).astype(np.float32)
    return FeatureHead(task, mean.astype(np.float32), scale, coef, intercept, float(weight), gated)
