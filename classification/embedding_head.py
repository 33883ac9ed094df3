"""The retrieval embedding: the trunk's pooled features, projected by a head trained for "more like this".

The pooled trunk features are what every classifier head reads, but their nearest neighbours are
ruled by whatever dominates the image (pose, background, size on the canvas) as much as by the
garment: on the catalogue test split 74% of the 10 nearest thumbnails shared the query's articleType
while the classifier names it right 83% of the time. A linear projection trained with a normalised
softmax ("proxy") loss fixes that cheaply: every label of a label set is a learned unit vector, the
loss is a softmax over the scaled cosines between an image's projected embedding and the proxies, so
images end up close to their label's proxy and so to each other (Zhai & Wu, "Classification is a
strong baseline for deep metric learning", 2019). Several label sets train one projection at once
(catalogue articleType and baseColour, the phone photos' and street crops' coarse labels); an image
counts only for the sets it is labelled in.

The projection is trained on frozen features, while the classifier's own heads were trained end to end
and name the articleType more often than the projection's neighbourhoods agree on it. So the head can
also carry a class profile: the square roots of the classifier's predicted distributions of a few
tasks (articleType, baseColour), weighted, join the projected vector; two images' profiles then
agree as much as their predicted distributions overlap (Bhattacharyya coefficient). The weights are
chosen on a validation gallery (tune_profile); the same forward pass gives tags and embedding.

The head is a float16 matrix (and the profile's weights) in the classifier bundle (embedding_head.npz)
and the manifest's "embedding" section says how it was trained and what it scored. Its hash joins the bundle version in
`Classifier.embedding_version`, so vectors from before and after a head never share an index.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import itertools
from pathlib import Path
from typing import Mapping, NamedTuple, Sequence

import keras
import numpy as np
from keras import layers, ops

from .bundle import garment_input_size_of, garments_suffix, heads_suffix, served_version, vote_suffix

HEAD_FILE = "embedding_head.npz"
MISSING = -1  # label index of an image that is not labelled in a label set
PROFILE_GRID = (0.0, 0.5, 1.0, 1.5, 2.0)  # the weights tried for each task of a class profile
PROFILE_SOURCES = ("model", "served")  # the probabilities a class profile may read (EmbeddingHead.profile_source)


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)  # an all-zero vector stays zero instead of NaN


@dataclasses.dataclass(frozen=True)
class EmbeddingHead:
    weight: np.ndarray  # (trunk features, projection dim) float32
    # The class profile: (task, weight, classes) for each task whose predicted distribution joins the
    # embedding, as the square roots of its probabilities times the weight. Two such parts have the
    # Bhattacharyya coefficient of the two distributions as their inner product, so the classifier's
    # own verdict (trained end to end, unlike the projection) pulls same-type items together.
    profile: tuple[tuple[str, float, int], ...] = ()
    # Which probabilities the profile reads: "model", the network's own, or "served", the bundle's served
    # probabilities (its neighbour vote and feature heads, as the tags are; never the rows people's labels
    # add, so an image's embedding stays a function of the bundle). See Classifier.profile_probabilities.
    profile_source: str = "model"

    def __post_init__(self):
        if self.profile_source not in PROFILE_SOURCES:
            raise ValueError(f"profile source {self.profile_source!r}: expected one of {PROFILE_SOURCES}")

    @property
    def dim(self) -> int:
        return int(self.weight.shape[1]) + sum(classes for _, _, classes in self.profile)

    @property
    def version(self) -> str:
        """A short hash of the weights and the profile: it names the embedding space."""
        digest = hashlib.sha256(self.weight.astype(np.float16).tobytes())
        if self.profile:
            digest.update(repr([(task, round(float(w), 4), int(n)) for task, w, n in self.profile]).encode())
            if self.profile_source != "model":  # the model's own: the hash it always had
                digest.update(self.profile_source.encode())
        return digest.hexdigest()[:12]

    @property
    def projection_version(self) -> str:
        """A short hash of the projection alone: the space the neighbour vote's rows live in (a new
        class profile leaves it, and the vote, as they were)."""
        return hashlib.sha256(self.weight.astype(np.float16).tobytes()).hexdigest()[:12]

    def with_profile(self, weights: Mapping[str, float], classes: Mapping[str, int],
                     source: str | None = None) -> "EmbeddingHead":
        """This projection with a class profile of the tasks weighted above zero (read from `source`'s
        probabilities; None: this head's)."""
        profile = tuple((task, float(w), int(classes[task])) for task, w in weights.items() if w > 0)
        return dataclasses.replace(self, profile=profile, profile_source=source or self.profile_source)

    def project(self, features: np.ndarray, probs: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Unit-length embeddings (N, dim) of raw pooled trunk features (N, trunk features) and, when the
        head has a class profile, the classifier's probabilities of the same images (task -> (N, classes))."""
        parts = [l2_normalise(l2_normalise(np.asarray(features, np.float32)) @ self.weight)]
        for task, weight, classes in self.profile:
            if probs is None or task not in probs:
                raise ValueError(f"this embedding needs the classifier's {task} probabilities")
            task_probs = np.asarray(probs[task], np.float32)
            if task_probs.shape != (len(parts[0]), classes):
                raise ValueError(f"{task} probabilities of shape {task_probs.shape}, expected ({len(parts[0])}, {classes})")
            parts.append(weight * np.sqrt(np.clip(task_probs, 0.0, None)))
        return l2_normalise(np.concatenate(parts, axis=1)).astype(np.float32)

    def save(self, folder: Path) -> Path:
        path = Path(folder) / HEAD_FILE
        arrays = {"weight": self.weight.astype(np.float16), "profile_source": np.array(self.profile_source)}
        if self.profile:
            arrays |= {"profile_tasks": np.array([task for task, _, _ in self.profile]),
                       "profile_weights": np.array([w for _, w, _ in self.profile], np.float64),
                       "profile_classes": np.array([n for _, _, n in self.profile], np.int64)}
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        path.write_bytes(buffer.getvalue())
        return path


def load_head(folder: str | Path) -> EmbeddingHead | None:
    """The bundle's embedding head, or None when it has none (embeddings are then the pooled features)."""
    path = Path(folder) / HEAD_FILE
    if not path.is_file():
        return None
    with np.load(path) as arrays:
        profile, source = (), "model"  # heads saved before profile sources read the model's own
        if "profile_tasks" in arrays:
            profile = tuple((str(task), float(w), int(n)) for task, w, n in
                            zip(arrays["profile_tasks"], arrays["profile_weights"], arrays["profile_classes"]))
        if "profile_source" in arrays:
            source = str(arrays["profile_source"])
        return EmbeddingHead(arrays["weight"].astype(np.float32), profile, source)


@dataclasses.dataclass(frozen=True)
class Gallery:
    """Images to tune a class profile on: their pooled features, probabilities and labels."""
    features: np.ndarray  # (N, trunk features)
    probs: Mapping[str, np.ndarray]  # task -> (N, classes)
    labels: Mapping[str, list]  # label set -> one label per image (None: unlabelled)


@dataclasses.dataclass(frozen=True)
class CrossSearch:
    """Images of one kind searched in a gallery of another (a phone photo in a catalogue): a found item
    counts when its class is one the query's label allows."""
    queries: Gallery
    gallery: str  # the name of the gallery searched
    allowed: np.ndarray  # (queries, classes) bool: the classes each query's label allows
    gallery_classes: np.ndarray  # (gallery items,) each item's class index (-1: none)


def cross_precision_at_k(queries: np.ndarray, gallery: np.ndarray, allowed: np.ndarray, gallery_classes: np.ndarray,
                         k: int = 10, chunk: int = 512) -> float:
    """Precision@k of searching `gallery` (unit vectors) with `queries`: the share of each query's k
    nearest items whose class its row of `allowed` allows, over the queries that allow any class."""
    allowed = np.asarray(allowed, bool)
    known = np.asarray(gallery_classes) >= 0
    gallery, classes = gallery[known], np.asarray(gallery_classes)[known]
    k = min(k, len(gallery))
    rows = np.flatnonzero(allowed.any(axis=1))
    if k < 1 or not len(rows):
        return float("nan")
    hits = []
    for start in range(0, len(rows), chunk):
        batch = rows[start:start + chunk]
        nearest = np.argpartition(-(queries[batch] @ gallery.T), k - 1, axis=1)[:, :k]
        hits.append(allowed[batch[:, None], classes[nearest]].mean(axis=1))
    return float(np.concatenate(hits).mean())


def tune_profile(head: EmbeddingHead, galleries: Mapping[str, Gallery], objective: Mapping[tuple[str, str], float],
                 tasks: list[str], grid: tuple[float, ...] = PROFILE_GRID, k: int = 10,
                 crosses: Mapping[str, CrossSearch] | None = None) -> tuple[EmbeddingHead, list[dict]]:
    """The head with the class profile (a weight from `grid` for each of `tasks`) that maximises the
    weighted sum of precision@k over (gallery, label set) pairs (`objective`), each gallery searched on
    its own, and over (cross search, "allowed") pairs: each of `crosses` searched in its gallery.
    Returns it and every candidate's scores."""
    crosses = crosses or {}
    classes = {task: next(iter(galleries.values())).probs[task].shape[1] for task in tasks}
    candidates = []
    for weights in itertools.product(grid, repeat=len(tasks)):
        candidate = head.with_profile(dict(zip(tasks, weights)), classes)
        scores, vectors = {}, {}
        for name, gallery in galleries.items():
            vectors[name] = candidate.project(gallery.features, gallery.probs)
            for (of, label_set) in objective:
                if of == name:
                    scores[f"{name}/{label_set}"] = precision_at_k(vectors[name], gallery.labels[label_set], k=k).precision
        for name, cross in crosses.items():
            if (name, "allowed") in objective:
                scores[f"{name}/allowed"] = cross_precision_at_k(
                    candidate.project(cross.queries.features, cross.queries.probs), vectors[cross.gallery],
                    cross.allowed, cross.gallery_classes, k=k)
        candidates.append({"weights": dict(zip(tasks, weights)), "precision": scores,
                           "objective": sum(w * scores[f"{name}/{label_set}"] for (name, label_set), w in objective.items())})
    best = max(candidates, key=lambda c: c["objective"])  # the first of equals: the smallest weights
    return head.with_profile(best["weights"], classes), candidates


def embedding_version(manifest: Mapping, head: EmbeddingHead | None, flip_average: bool | float | None = None,
                      served_as: str | None = None) -> str:
    """The name of a bundle's embedding space: name:version, "+flip" when the features are averaged with
    the mirror image's, plus its head's hash when it has one; a profile of the served probabilities adds
    what serves them (`served_as`: the vote's and feature heads' suffixes, by default the manifest's).
    Embeddings are comparable only within one space."""
    version = served_version(manifest, flip_average) + (f"+{head.version}" if head else "")
    if head is not None and head.profile and head.profile_source == "served":
        version += served_extras(manifest) if served_as is None else served_as
    return version


def served_extras(manifest: Mapping, neighbour_vote: bool = True, feature_heads: bool = True,
                  garment_input_size: Sequence[int] | None = None) -> str:
    """What the served outputs gain over the model's in a bundle, as Classifier names them: the size garments
    are read at (`garment_input_size` overrides the manifest's), its vote's and feature heads' suffixes (of
    those served: a server can turn either off)."""
    input_size = (manifest.get("model") or {}).get("input_size")
    garments = garments_suffix(garment_input_size_of(manifest, garment_input_size), input_size) if input_size else ""
    return (garments
            + vote_suffix((manifest.get("neighbour_vote") or {}).get("version") if neighbour_vote else None)
            + heads_suffix((manifest.get("feature_heads") or {}).get("version") if feature_heads else None))


@keras.saving.register_keras_serializable("fashion_tagger")
class CosineProxies(layers.Layer):
    """Scaled cosine similarity of unit embeddings to one learned proxy per label: softmax logits."""

    def __init__(self, labels: int, scale: float = 16.0, **kwargs):
        super().__init__(**kwargs)
        self.labels, self.scale = labels, scale

    def build(self, input_shape):
        self.proxies = self.add_weight(shape=(input_shape[-1], self.labels), initializer="glorot_normal",
                                       name="proxies")

    def call(self, embeddings):
        proxies = self.proxies / ops.maximum(ops.sqrt(ops.sum(ops.square(self.proxies), axis=0, keepdims=True)), 1e-12)
        return self.scale * ops.matmul(embeddings, proxies)

    def get_config(self):
        return {**super().get_config(), "labels": self.labels, "scale": self.scale}


def build_training_model(features: int, dim: int, label_sets: Mapping[str, int], scale: float = 16.0) -> keras.Model:
    """Pooled features -> unit length -> projection -> unit length -> logits over each label set's proxies."""
    inputs = keras.Input((features,), name="features")
    normalised = layers.UnitNormalization(name="features_unit")(inputs)
    projected = layers.Dense(dim, use_bias=False, name="projection")(normalised)
    embedding = layers.UnitNormalization(name="embedding")(projected)
    outputs = {name: CosineProxies(count, scale, name=name)(embedding) for name, count in label_sets.items()}
    return keras.Model(inputs, outputs, name="embedding_head")


def train_head(features: np.ndarray, labels: Mapping[str, np.ndarray], dim: int = 256, epochs: int = 20,
               batch_size: int = 256, learning_rate: float = 2e-3, scale: float = 16.0,
               loss_weights: Mapping[str, float] | None = None, seed: int = 1234,
               verbose: int = 0) -> tuple[EmbeddingHead, dict]:
    """Fit a projection on pooled features (N, F); `labels` maps each label set to (N,) label indices
    (MISSING where an image is not labelled in it). Returns the head and the loss history."""
    keras.utils.set_random_seed(seed)
    features = np.asarray(features, np.float32)
    label_sets = {name: int(values.max()) + 1 for name, values in labels.items() if (values != MISSING).any()}
    if not label_sets:
        raise ValueError("no image is labelled in any label set")
    model = build_training_model(features.shape[1], dim, label_sets, scale)
    targets = {name: np.where(labels[name] == MISSING, 0, labels[name]).astype(np.int32) for name in label_sets}
    # An image counts only in the label sets it is labelled in; each set's weight is spread over its images.
    weights = {}
    for name in label_sets:
        known = (labels[name] != MISSING).astype(np.float32)
        weights[name] = known * len(known) / known.sum() * (loss_weights or {}).get(name, 1.0)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, epochs * -(-len(features) // batch_size))
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=1e-4),
                  loss={name: keras.losses.SparseCategoricalCrossentropy(from_logits=True) for name in label_sets})
    history = model.fit(features, targets, sample_weight=weights, batch_size=batch_size, epochs=epochs,
                        shuffle=True, verbose=verbose)
    weight = keras.ops.convert_to_numpy(model.get_layer("projection").kernel).astype(np.float32)
    return EmbeddingHead(weight), {key: [round(float(v), 5) for v in values] for key, values in history.history.items()}


class RetrievalScore(NamedTuple):
    precision: float  # mean share of each query's k nearest others that carry its label
    chance: float  # the same for k others drawn at random: the share of other items with the label
    queries: int  # queries counted (those with a label)
    ceiling: float  # the best any embedding could score here: a label with n items has only n - 1 others


def precision_at_k(vectors: np.ndarray, labels, query_rows: np.ndarray | None = None, k: int = 10,
                   chunk: int = 512) -> RetrievalScore:
    """Precision@k of nearest-neighbour search (inner product) over the queries that have a label
    (None: unlabelled), with its chance level and its ceiling. A gallery of k or fewer items is scored
    on all the others."""
    k = min(k, len(vectors) - 1)
    if k < 1:
        return RetrievalScore(float("nan"), float("nan"), 0, float("nan"))
    labels = np.array([label if label is not None else "\0none" for label in labels], dtype=object)
    rows = np.arange(len(vectors)) if query_rows is None else np.asarray(query_rows)
    rows = rows[labels[rows] != "\0none"]
    _, codes = np.unique(labels.astype(str), return_inverse=True)
    counts = np.bincount(codes)
    precisions = []
    for start in range(0, len(rows), chunk):
        batch = rows[start:start + chunk]
        scores = vectors[batch] @ vectors.T
        scores[np.arange(len(batch)), batch] = -np.inf  # not itself
        nearest = np.argpartition(-scores, k, axis=1)[:, :k]
        precisions.append(np.mean(codes[nearest] == codes[batch][:, None], axis=1))
    if not precisions:
        return RetrievalScore(float("nan"), float("nan"), 0, float("nan"))
    others = counts[codes[rows]] - 1
    return RetrievalScore(float(np.concatenate(precisions).mean()), float(np.mean(others / (len(labels) - 1))),
                          len(rows), float(np.mean(np.minimum(others, k) / k)))
