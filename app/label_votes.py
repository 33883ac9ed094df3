"""Each worker's neighbour vote with the items people labelled as extra rows (no retraining).

The served tags mix the model's probabilities with the labels of the nearest training images
(classification.neighbour_vote). An item a person labelled (app/labels.py) is one more such image: its
stored embedding, in the serving embedding space, starts with the vote's own projection (the embedding
head's output before its class profile), so the row is that part made unit length again, labelled for
the tasks the person gave (and the category levels they imply). Images near it are then tagged more like
the person tagged it.

Every worker keeps its rows current by itself, as its similarity index does: before a classifier call,
at most every LABEL_VOTE_SYNC_SECONDS, one aggregate query (count and sum of the random revisions of the
labelled items that have an embedding in the serving space) says whether anything changed since it last
read them; only then are the rows read again. If that query fails (a database outage), the worker keeps
the rows it has and tags on; the analysis reports the outage where it writes.
"""
from __future__ import annotations

import logging
import threading
import time

import numpy as np
from sqlalchemy import func, select

from classification.embedding_head import l2_normalise
from classification.neighbour_vote import NO_LABEL, NeighbourVote

from .embeddings import matrix_from_bytes
from .models import ItemEmbedding, ItemLabels

log = logging.getLogger(__name__)


class LabelVotes:
    def __init__(self, sessionmaker, sync_seconds: float = 2.0):
        self.sessionmaker = sessionmaker
        self.sync_seconds = sync_seconds
        self._lock = threading.Lock()
        self._base: NeighbourVote | None = None
        self._served: NeighbourVote | None = None
        self._model = self._taxonomy = None
        self._token = None
        self._checked = float("-inf")
        self.rows = 0  # labelled items in the served vote

    def attach(self, pipeline) -> None:
        """Serve the pipeline's classifier the bundle's vote plus the labelled items (nothing to add to
        when the bundle has no vote)."""
        classifier = pipeline.classifier
        if classifier.neighbour_vote is None:
            return
        with self._lock:
            self._base = self._served = classifier.neighbour_vote
            self._model, self._taxonomy = pipeline.embedding_model, classifier.taxonomy
            self._token, self._checked, self.rows = None, float("-inf"), 0
        classifier.vote_source = self.vote

    def vote(self) -> NeighbourVote | None:
        """The vote to serve now (read again from the database when the labels changed)."""
        with self._lock:
            if time.monotonic() - self._checked >= self.sync_seconds:
                try:
                    self._sync()
                except Exception as error:  # noqa: BLE001 - tags go on with the rows already read
                    log.warning("labelled vote rows not refreshed: %s: %s", type(error).__name__, error)
                self._checked = time.monotonic()
            return self._served

    def _sync(self) -> None:
        with self.sessionmaker() as session:
            token = tuple(session.execute(self._embedded(func.count(), func.coalesce(func.sum(ItemLabels.revision), 0))).one())
            if token == self._token:
                return
            rows = session.execute(self._embedded(ItemLabels.labels, ItemEmbedding.vector)
                                   .order_by(ItemLabels.item_id)).all()
        self._served = self._with_rows([labels for labels, _ in rows], [vector for _, vector in rows])
        self._token, self.rows = token, len(rows)

    def _embedded(self, *columns):
        """`columns` of the labelled items that have an embedding in the serving space."""
        return select(*columns).select_from(ItemLabels).join(
            ItemEmbedding, (ItemEmbedding.item_id == ItemLabels.item_id) & (ItemEmbedding.model == self._model))

    def _with_rows(self, labels: list[dict], vectors: list[bytes]) -> NeighbourVote:
        if not labels:
            return self._base
        dim = self._base.vectors.shape[1]
        # The stored embedding begins with the vote's projection (then the class profile, when the head
        # has one): that part, unit length again, is the row's vector in the vote's space.
        rows = l2_normalise(matrix_from_bytes(vectors)[:, :dim])
        indices = {task: np.array([self._taxonomy.index(task, given.get(task)) for given in labels], np.int64)
                   for task in self._base.labels}
        indices = {task: np.where(values >= 0, values, NO_LABEL) for task, values in indices.items()}
        return self._base.with_rows(rows, indices)
