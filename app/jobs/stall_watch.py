"""Stalled jobs resumed without an operator: each serving process looks for them now and then.

A job stalls when the batches meant for its open URLs are gone: an embedded queue's process died or was
recycled by gunicorn with batches in hand, Redis lost its queue, or a Celery worker died in the instant
between taking a task and recording it as unacknowledged. Every process that loads the models (API
workers, job workers) runs a daemon thread that every JOB_STALL_TIMEOUT / 4 seconds enqueues again the
open URLs of the jobs none of whose URLs has changed for JOB_STALL_TIMEOUT (what `flask jobs resume`
does by hand), once its queue has nothing waiting: the broker's queue for Celery, this process's own
batches for the embedded queue (a busy process leaves a dead one's jobs to an idle one). Processes
racing for one job resume it once on PostgreSQL (service.resume re-checks under the job's row lock); a
URL enqueued twice is analysed once. An open URL that has used all its JOB_MAX_ATTEMPTS attempts fails
as `worker_lost` instead of being tried for ever (service.process_urls).
"""
from __future__ import annotations

import datetime as dt
import logging

from flask import Flask
from sqlalchemy.orm import Session

from ..metrics import JOB_URLS_RESUMED
from ..periodic import PeriodicThread
from . import service

log = logging.getLogger(__name__)


def resume_stalled(app: Flask, session: Session, quiet: dt.timedelta, job_ids: list[str] | None = None) -> dict[str, int]:
    """Enqueue again the open URLs of every stalled job (only among `job_ids` when given), in batches.
    Returns job id -> URLs enqueued, for the jobs this call resumed. Raises QueueUnavailable (the URLs
    stay open and stamped: the next look, after `quiet`, tries again)."""
    settings, queue = app.config["SETTINGS"], app.extensions["job_queue"]
    resumed = {}
    for job_id in [job.id for job in service.stalled_jobs(session, quiet, job_ids)]:
        url_ids = service.resume(session, job_id, quiet)
        for batch in service.batches(url_ids, settings.job_batch_size):
            queue.submit(job_id, batch)
        if url_ids:
            JOB_URLS_RESUMED.inc(len(url_ids))
            resumed[job_id] = len(url_ids)
    return resumed


class StallWatch:
    def __init__(self, app: Flask):
        self.app = app
        self.timeout = app.config["SETTINGS"].job_stall_timeout
        self._thread = PeriodicThread("job-stall-watch", max(1.0, self.timeout / 4) if self.timeout > 0 else 0,
                                      self.run_once)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._thread.stop()

    def run_once(self) -> int:
        """Resume every stalled job; returns how many URLs were enqueued again. Not while the queue has
        batches waiting: a job that looks stalled then is most likely waiting behind them, and enqueueing
        it again every JOB_STALL_TIMEOUT would pile copies of a long backlog onto the queue."""
        if self.app.extensions["job_queue"].backlog():
            return 0
        with self.app.extensions["sessionmaker"]() as session:
            resumed = resume_stalled(self.app, session, dt.timedelta(seconds=self.timeout))
        for job_id, count in resumed.items():
            log.warning("job %s stalled for %s s: %d URLs enqueued again", job_id, self.timeout, count)
        return sum(resumed.values())
