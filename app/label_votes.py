"""Each worker's neighbour vote with the items people labelled as extra rows (no retraining).

The served tags mix the model's probabilities with the labels of the nearest training images
(classification.neighbour_vote). An item a person labelled (app/labels.py) is one more such image: its
stored embedding, in the serving embedding space, starts with the vote's own projection (the embedding
head's output before its class profile), so the row is that part made unit length again, labelled for
the tasks the person gave (and the category levels they imply). Images near it are then tagged more like
the person tagged it.

Every worker keeps its rows current by itself, as its similarity index does, and never makes a request
wait for it: when a classifier call finds the last check LABEL_VOTE_SYNC_SECONDS old, a background thread
asks one aggregate query (count and sum of the random revisions of the labelled items that have an
embedding in the serving space) whether anything changed, and only then reads the rows again and swaps
in the new vote; the call itself tags with the vote it has. A re-read that took T seconds puts the next
check at least 20 T away, so a worker never spends more than about 5% of its time on it however many
items are labelled (bench/label_votes.py). A database it cannot reach leaves it tagging with the rows it
has.
"""
from __future__ import annotations

import logging
import threading
import time

import numpy as np
from sqlalchemy import func, select

from classification.embedding_head import l2_normalise
from classification.neighbour_vote import NO_LABEL, NeighbourVote

from .embeddings import STORED_DTYPE
from .models import Analysis, Item, ItemEmbedding, ItemLabels, is_current_analysis

log = logging.getLogger(__name__)


class LabelVotes:
    REREAD_SHARE = 20  # the next check waits at least this many times as long as the last re-read took

    def __init__(self, sessionmaker, sync_seconds: float = 2.0):
        self.sessionmaker = sessionmaker
        self.sync_seconds = sync_seconds
        self._lock = threading.Lock()  # one re-read at a time
        self._starting = threading.Lock()  # one background check started at a time
        self._thread: threading.Thread | None = None
        self._base: NeighbourVote | None = None
        self._served: NeighbourVote | None = None
        self._model = self._taxonomy = None
        self._token = None
        self._due = float("-inf")
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
            self._token, self._due, self.rows = None, float("-inf"), 0
        classifier.vote_source = self.vote

    def vote(self) -> NeighbourVote | None:
        """The vote to serve now; starts a check for changed labels in the background when one is due."""
        served = self._served  # read first: a check started here may swap in new rows before this returns
        if time.monotonic() >= self._due and self._starting.acquire(blocking=False):
            try:
                if self._thread is None or not self._thread.is_alive():
                    self._due = time.monotonic() + self.sync_seconds
                    self._thread = threading.Thread(target=self._refresh_logged, name="label-votes", daemon=True)
                    self._thread.start()
            finally:
                self._starting.release()
        return served

    def refresh(self) -> bool:
        """Read the labelled rows again if they changed (True when they were); raises database errors."""
        with self._lock:
            start = time.monotonic()
            with self.sessionmaker() as session:
                token = tuple(session.execute(self._embedded(func.count(), func.coalesce(func.sum(ItemLabels.revision), 0))).one())
                if token == self._token:
                    return False
                rows = session.execute(self._embedded(ItemLabels.labels, ItemEmbedding.vector)
                                       .order_by(ItemLabels.item_id)).all()
            self._served = self._with_rows([labels for labels, _ in rows], [vector for _, vector in rows])
            self._token, self.rows = token, len(rows)
            took = time.monotonic() - start
            self._due = max(self._due, time.monotonic() + self.REREAD_SHARE * took)
            return True

    def _refresh_logged(self) -> None:
        try:
            self.refresh()
        except Exception as error:  # noqa: BLE001 - tags go on with the rows already read
            log.warning("labelled vote rows not refreshed: %s: %s", type(error).__name__, error)

    def wait(self, timeout: float = 30.0) -> None:
        """Until the background check in flight (if any) has finished (tests, benchmarks)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _embedded(self, *columns):
        """`columns` of the labelled items of current analyses that have an embedding in the serving space
        (a superseded analysis' item passed its labels on to the current one's: it must not vote twice)."""
        return (select(*columns).select_from(ItemLabels)
                .join(ItemEmbedding, (ItemEmbedding.item_id == ItemLabels.item_id) & (ItemEmbedding.model == self._model))
                .join(Item, Item.id == ItemLabels.item_id).join(Analysis, Analysis.id == Item.analysis_id)
                .where(is_current_analysis()))

    def _with_rows(self, labels: list[dict], vectors: list[bytes]) -> NeighbourVote:
        if not labels:
            return self._base
        dim = self._base.vectors.shape[1]
        # The stored embedding begins with the vote's projection (then the class profile, when the head
        # has one): that part, unit length again, is the row's vector in the vote's space.
        stored = np.frombuffer(b"".join(vectors), dtype=STORED_DTYPE).reshape(len(vectors), -1)
        rows = l2_normalise(stored[:, :dim].astype(np.float32))
        # taxonomy.index is -1 for a task the person left out (or a label this bundle lacks): no label
        indices = {task: np.array([max(self._taxonomy.index(task, given.get(task)), NO_LABEL) for given in labels],
                                  np.int64) for task in self._base.labels}
        return self._base.with_rows(rows, indices)
