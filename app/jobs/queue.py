"""Where job batches go: Celery on Redis in production, or an in-process thread pool when no broker
is configured (the embedded default: no extra service, but no scale-out and no redelivery after a crash)."""
from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from celery import Celery
from flask import Flask
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from ..config import Settings

log = logging.getLogger(__name__)
TASK_NAME = "fashion_tagger.process_urls"
OUTAGE_RETRIES = 40  # a batch that meets a database outage is retried, 2 s doubling to 30 s (as on Celery)


def make_celery(settings: Settings) -> Celery:
    celery = Celery("fashion_tagger", broker=settings.broker_url)
    celery.conf.update(
        task_acks_late=True,  # acknowledged after the work: a killed worker's task is delivered again
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=settings.job_queue,
        broker_transport_options={"visibility_timeout": settings.job_visibility_timeout,
                                  **redelivery_sweep(settings.job_visibility_timeout),
                                  "socket_connect_timeout": settings.broker_timeout,
                                  "socket_timeout": max(settings.broker_timeout, 5.0)},
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=settings.broker_timeout,
        # A submission with the broker down fails in about broker_timeout seconds (-> 503), not minutes.
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
        task_serializer="json", accept_content=["json"], worker_hijack_root_logger=False,
    )
    return celery


def redelivery_sweep(visibility_timeout: int) -> dict:
    """How often workers look for a dead worker's unacknowledged tasks, and how long the sweep's lock lives.

    kombu's defaults sweep every 10 s but scan Redis on one sweep in ten (about 100 s), and lock each scan
    for 300 s: a worker killed while it held that lock stops every other worker's scans for five minutes.
    The scan takes milliseconds, so scan on every sweep, at least every visibility timeout, and let a
    dead holder's lock lapse within half a minute: a killed worker's task is back within the visibility
    timeout and at most 40 s more."""
    period = max(1, min(10, visibility_timeout))
    return {"unacked_restore_interval": period, "unacked_restore_throttle": 1,
            "unacked_mutex_expire": max(1, min(30, visibility_timeout))}


class QueueUnavailable(Exception):
    """The broker could not take a message."""


# What an unreachable or restarting Redis raises through kombu and redis-py.
BROKER_ERRORS = (OperationalError, RedisError, ConnectionError, OSError)


class CeleryQueue:
    def __init__(self, settings: Settings):
        self.celery = make_celery(settings)
        self.timeout = settings.broker_timeout
        self.name = settings.job_queue

    def submit(self, job_id: str, url_ids: list[int], delay: float = 0) -> None:
        try:
            self.celery.send_task(TASK_NAME, args=(job_id, url_ids), countdown=delay or None)
        except BROKER_ERRORS as error:
            raise QueueUnavailable(f"{type(error).__name__}: {error}") from error

    def check(self) -> None:
        """Raises QueueUnavailable unless the broker answers now (readiness)."""
        try:
            with self.celery.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=self.timeout)
        except BROKER_ERRORS as error:
            raise QueueUnavailable(f"{type(error).__name__}: {error}") from error

    def backlog(self) -> int:
        """Batches waiting in the broker's queue for a worker (not those workers hold already)."""
        try:
            with self.celery.connection_for_read() as connection:
                connection.ensure_connection(max_retries=1, timeout=self.timeout)
                return connection.default_channel.queue_declare(queue=self.name).message_count
        except BROKER_ERRORS as error:
            raise QueueUnavailable(f"{type(error).__name__}: {error}") from error


class EmbeddedQueue:
    """Runs batches on threads of this process."""

    def __init__(self, app: Flask, threads: int):
        self.app = app
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="job")
        self._pending = 0  # batches submitted here and not yet finished
        self._pending_lock = threading.Lock()

    def submit(self, job_id: str, url_ids: list[int], delay: float = 0) -> None:
        if delay:
            timer = threading.Timer(delay, self.submit, args=(job_id, url_ids))
            timer.daemon = True
            timer.start()
            return
        with self._pending_lock:
            self._pending += 1
        self.executor.submit(self._run_counted, job_id, url_ids)

    def check(self) -> None:
        """In process: available whenever the process is."""

    def backlog(self) -> int:
        """Batches this process has waiting or running."""
        with self._pending_lock:
            return self._pending

    def _run_counted(self, job_id: str, url_ids: list[int], outages: int = 0) -> None:
        try:
            self._run(job_id, url_ids, outages)
        finally:
            with self._pending_lock:
                self._pending -= 1

    def _run(self, job_id: str, url_ids: list[int], outages: int = 0) -> None:
        from ..errors import is_outage
        from .service import process_urls

        try:
            with self.app.app_context():
                for ids, delay in process_urls(self.app, job_id, url_ids, worker="embedded"):
                    self.submit(job_id, ids, delay)
        except Exception as error:  # noqa: BLE001 - a failed batch must not kill the pool thread
            if is_outage(error) and outages < OUTAGE_RETRIES:  # the database is away: try the batch later
                log.warning("job %s: database unavailable, batch retried: %s", job_id, error)
                with self._pending_lock:
                    self._pending += 1
                timer = threading.Timer(min(2.0 * 2 ** outages, 30.0), self.executor.submit,
                                        args=(self._run_counted, job_id, url_ids, outages + 1))
                timer.daemon = True
                timer.start()
                return
            log.exception("job %s: batch failed", job_id)


def make_queue(app: Flask):
    settings = app.config["SETTINGS"]
    return CeleryQueue(settings) if settings.broker_url else EmbeddedQueue(app, settings.embedded_job_threads)
