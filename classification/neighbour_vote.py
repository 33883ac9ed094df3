"""The neighbour vote: tags mixed with the labels of the nearest training images.

The classifier's heads were trained on these training images, yet at serving they answer from weights
alone; the labels of the images nearest a query (in the embedding head's projection of the pooled trunk
features) are a second, independent opinion. A bundle with a vote (`neighbour_vote.npz`) keeps its
training images' projected vectors (float16) and their labels: catalogue rows one label per task; phone
photos and street crops, whose labels allow a set of articleTypes, the classifier's own distribution
inside the allowed set (and nothing for the tasks their labels say nothing about).

A query's vote for a task is the label distribution of those of its k nearest rows that carry the task, each
weighted by exp((cosine - best cosine) / temperature); the served probabilities are
(1 - weight) x the model's + weight x the vote's. A task no neighbour carries keeps the model's own.
k, temperature and weight are chosen on the catalogue validation split (classification.build_neighbour_vote).
The vote names itself in the tag versions (`+vote<version>`): the same weights with and without it tag
differently. It needs the bundle's embedding head (its projection is the vote's space) and refuses
another head than the one it was built with.
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

from .embedding_head import EmbeddingHead, l2_normalise

VOTE_FILE = "neighbour_vote.npz"
NO_LABEL = -1


@dataclasses.dataclass(frozen=True)
class NeighbourVote:
    vectors: np.ndarray  # (rows, dim) unit vectors of the training images, in the head's projection
    # task -> (rows,) label index (rows: the training images, then any added), NO_LABEL where a row has
    # none or a distribution instead
    labels: Mapping[str, np.ndarray]
    # task -> (row indices (m,), distributions (m, classes)): rows whose label allows several classes
    distributions: Mapping[str, tuple[np.ndarray, np.ndarray]]
    classes: Mapping[str, int]  # task -> number of classes
    head_version: str  # the embedding head projection that made `vectors` (EmbeddingHead.projection_version)
    k: int = 5
    temperature: float = 0.05
    weight: float = 0.35
    # (m, dim) rows added at serving (with_rows), a block of their own: the bundle's 40 MB of vectors
    # are shared, not copied, by every vote made from it.
    added: np.ndarray | None = None

    def __post_init__(self):
        if not (self.k >= 1 and self.temperature > 0 and 0 <= self.weight <= 1):
            raise ValueError(f"neighbour vote needs k >= 1, temperature > 0, weight in [0, 1]: "
                             f"{self.k}, {self.temperature}, {self.weight}")
        # float32 once, at load: float16 matrix products are slow on CPUs (the file keeps float16)
        object.__setattr__(self, "vectors", np.asarray(self.vectors, np.float32))
        # row -> position in its task's distributions (-1: none), to gather a few rows' labels cheaply
        positions = {}
        for task, (rows, _) in self.distributions.items():
            positions[task] = np.full(self.row_count, -1, np.int64)
            positions[task][rows] = np.arange(len(rows))
        object.__setattr__(self, "_positions", positions)

    @property
    def row_count(self) -> int:
        return len(self.vectors) + (0 if self.added is None else len(self.added))

    @functools.cached_property
    def version(self) -> str:
        """A short hash of the rows, their labels and the parameters (computed once: 20 MB of vectors)."""
        digest = hashlib.sha256(np.asarray(self.vectors, np.float16).tobytes())
        if self.added is not None:
            digest.update(np.asarray(self.added, np.float16).tobytes())
        for task in sorted(self.labels):
            digest.update(task.encode() + np.asarray(self.labels[task], np.int16).tobytes())
        for task in sorted(self.distributions):
            rows, values = self.distributions[task]
            digest.update(task.encode() + np.asarray(rows, np.int32).tobytes() + np.asarray(values, np.float16).tobytes())
        digest.update(repr((self.k, round(self.temperature, 6), round(self.weight, 6), self.head_version)).encode())
        return digest.hexdigest()[:12]

    def with_parameters(self, k: int, temperature: float, weight: float) -> "NeighbourVote":
        return dataclasses.replace(self, k=int(k), temperature=float(temperature), weight=float(weight))

    def with_rows(self, vectors: np.ndarray, labels: Mapping[str, np.ndarray]) -> "NeighbourVote":
        """This vote with more rows: unit `vectors` (m, dim) in its space and their label index per task
        (NO_LABEL, or a task left out, where a row says nothing of it): labelled items added at serving
        (app/label_votes.py), with this vote's parameters. The tags keep naming the bundle's vote
        (Classifier.versions): rows people add change as they label, the bundle does not."""
        vectors = np.asarray(vectors, np.float32).reshape(-1, self.vectors.shape[1])
        unknown = set(labels) - set(self.labels)
        if unknown:
            raise ValueError(f"no such tasks in this vote: {sorted(unknown)}")
        none = np.full(len(vectors), NO_LABEL, np.int64)
        return dataclasses.replace(
            self, added=vectors if self.added is None else np.concatenate([self.added, vectors]),
            labels={task: np.concatenate([rows, np.asarray(labels.get(task, none), np.int64)])
                    for task, rows in self.labels.items()})

    def neighbours(self, queries: np.ndarray, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Rows (N, k) of the nearest training images of each unit query vector, nearest first, and their cosines."""
        k = min(k or self.k, self.row_count)
        queries = np.asarray(queries, np.float32)
        cosines = queries @ self.vectors.T
        if self.added is not None and len(self.added):
            cosines = np.concatenate([cosines, queries @ self.added.T], axis=1)
        rows = np.argpartition(-cosines, k - 1, axis=1)[:, :k]
        near = np.take_along_axis(cosines, rows, axis=1)
        order = np.argsort(-near, axis=1)
        return np.take_along_axis(rows, order, axis=1), np.take_along_axis(near, order, axis=1)

    def label_rows(self, task: str, rows: np.ndarray) -> np.ndarray:
        """(*rows.shape, classes) float32: the label distribution of each given training row for `task`
        (zeros where the row has no label)."""
        out = np.zeros((*rows.shape, self.classes[task]), np.float32)
        single = self.labels[task][rows]
        where = np.nonzero(single != NO_LABEL)
        out[(*where, single[where])] = 1.0
        if task in self.distributions:
            position = self._positions[task][rows]
            where = np.nonzero(position >= 0)
            out[where] = self.distributions[task][1][position[where]]
        return out

    def votes(self, rows: np.ndarray, cosines: np.ndarray) -> dict[str, np.ndarray]:
        """task -> (N, classes) vote of the k nearest rows, those that carry the task; NaN where none does."""
        out = {}
        nearness = np.exp((cosines[:, :self.k] - cosines[:, :1]) / self.temperature)  # the same for every task
        for task in self.labels:
            labelled = self.label_rows(task, rows[:, :self.k])  # (N, k, classes)
            weights = nearness * (labelled.sum(axis=2) > 0)  # rows without the task's label do not vote
            total = weights.sum(axis=1, keepdims=True)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[task] = np.where(total > 0, (weights[:, :, None] * labelled).sum(axis=1) / total, np.nan)
        return out

    def mix(self, probs: Mapping[str, np.ndarray], queries: np.ndarray) -> dict[str, np.ndarray]:
        """The served probabilities: the model's `probs` mixed with the vote of each query's neighbours."""
        if not len(queries):
            return dict(probs)
        return self.mixed(probs, self.votes(*self.neighbours(queries)))

    def mixed(self, probs: Mapping[str, np.ndarray], votes: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """(1 - weight) x `probs` + weight x `votes`, task by task; the model's own where no vote."""
        out = dict(probs)
        for task, vote in votes.items():
            if task in out:
                mixed = (1 - self.weight) * out[task] + self.weight * vote
                out[task] = np.where(np.isnan(mixed), out[task], mixed).astype(np.float32)
        return out

    def save(self, folder: Path) -> Path:
        vectors = self.vectors if self.added is None else np.concatenate([self.vectors, self.added])
        arrays = {"vectors": np.asarray(vectors, np.float16), "head_version": np.array(self.head_version),
                  "parameters": np.array([self.k, self.temperature, self.weight], np.float64),
                  "tasks": np.array(sorted(self.labels)),
                  "classes": np.array([self.classes[t] for t in sorted(self.labels)], np.int64)}
        for task in self.labels:
            arrays[f"labels/{task}"] = np.asarray(self.labels[task], np.int16)
        for task, (rows, values) in self.distributions.items():
            arrays[f"rows/{task}"] = np.asarray(rows, np.int32)
            arrays[f"distributions/{task}"] = np.asarray(values, np.float16)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        path = Path(folder) / VOTE_FILE
        path.write_bytes(buffer.getvalue())
        return path


def load_vote(folder: str | Path, head: EmbeddingHead | None, expected_version: str | None = None) -> NeighbourVote | None:
    """The bundle's neighbour vote, or None when it has none; refused when built on another head, or when
    its content is not the `expected_version` the manifest recorded (a corrupt or replaced file)."""
    path = Path(folder) / VOTE_FILE
    if not path.is_file():
        return None
    with np.load(path) as arrays:
        head_version = str(arrays["head_version"])
        # Its rows live in the head's projection; votes built before they were tied to the projection alone
        # name the whole head (the same projection, as long as the profile is the one they were built with).
        if head is None or head_version not in (head.projection_version, head.version):
            raise BundleError(f"{path} was built on embedding head {head_version}, the bundle's projection is "
                              f"{head.projection_version if head else 'missing'}: rebuild it "
                              "(classification.build_neighbour_vote)")
        tasks = [str(t) for t in arrays["tasks"]]
        k, temperature, weight = arrays["parameters"]
        vote = NeighbourVote(
            vectors=arrays["vectors"], labels={t: arrays[f"labels/{t}"].astype(np.int64) for t in tasks},
            distributions={t: (arrays[f"rows/{t}"].astype(np.int64), arrays[f"distributions/{t}"].astype(np.float32))
                           for t in tasks if f"rows/{t}" in arrays},
            classes=dict(zip(tasks, (int(n) for n in arrays["classes"]))), head_version=head_version,
            k=int(k), temperature=float(temperature), weight=float(weight))
    if expected_version is not None and vote.version != expected_version:
        raise BundleError(f"{path}: version {vote.version} does not match the manifest's {expected_version} "
                          "(corrupt or replaced file)")
    return vote


def project(head: EmbeddingHead, features: np.ndarray) -> np.ndarray:
    """The vote's space: the head's projection of the pooled features, without its class profile."""
    return l2_normalise(l2_normalise(np.asarray(features, np.float32)) @ head.weight)


def vote_rows(records, probs: Mapping[str, np.ndarray], taxonomy, tasks) -> tuple[dict, dict]:
    """Labels and distributions of training `records`: a record allowing one known label of a task keeps
    its index; one allowing several keeps the model's `probs` renormalised inside the allowed set."""
    labels, distributions = {}, {}
    for task in tasks:
        single = np.full(len(records), NO_LABEL, np.int64)
        rows, values = [], []
        for i, record in enumerate(records):
            allowed = [j for j in (taxonomy.index(task, name) for name in record.allowed.get(task, ())) if j >= 0]
            if len(allowed) == 1:
                single[i] = allowed[0]
            elif allowed:
                inside = np.zeros(taxonomy.num_classes(task), np.float32)
                inside[allowed] = probs[task][i, allowed] + 1e-6
                rows.append(i)
                values.append(inside / inside.sum())
        labels[task] = single
        if rows:
            distributions[task] = (np.asarray(rows, np.int64), np.stack(values))
    return labels, distributions


def vote_of(records, probs: Mapping[str, np.ndarray], vectors: np.ndarray, taxonomy, tasks, head_version: str,
            **parameters) -> NeighbourVote:
    """A vote whose rows are `records` at `vectors` (unit, in the vote's space), labelled as vote_rows
    labels them from the model's `probs`."""
    labels, distributions = vote_rows(records, probs, taxonomy, tasks)
    return NeighbourVote(vectors=vectors, labels=labels, distributions=distributions,
                         classes={task: taxonomy.num_classes(task) for task in tasks}, head_version=head_version,
                         **parameters)
