"""Celery worker entry point: `celery -A app.jobs.worker worker --pool=solo --queues fashion-tagger`.

One worker process = one copy of the models; scale out by starting more (on more machines).
"""
import torch  # noqa: F401  (torch and torchvision before TensorFlow)
import torchvision  # noqa: F401

from celery import signals  # noqa: E402
from sqlalchemy.exc import InterfaceError, OperationalError  # noqa: E402
from sqlalchemy.exc import TimeoutError as PoolTimeout  # noqa: E402

from app import create_app  # noqa: E402
from app.config import Settings  # noqa: E402

from .queue import TASK_NAME, make_celery  # noqa: E402
from .service import process_urls  # noqa: E402

flask_app = create_app(Settings.from_env().replace(similarity_build_at_start=False))  # it stores, never searches
celery = make_celery(flask_app.config["SETTINGS"])
queue = flask_app.extensions["job_queue"]


# A database outage fails the batch before anything is final: try it again later (the work is idempotent)
# rather than acknowledge it and leave its URLs running for ever.
@celery.task(name=TASK_NAME, bind=True, autoretry_for=(OperationalError, InterfaceError, PoolTimeout),
             retry_backoff=2, retry_backoff_max=30, retry_jitter=False, max_retries=40)
def process_urls_task(self, job_id: str, url_ids: list[int]) -> None:
    with flask_app.app_context():
        for ids, delay in process_urls(flask_app, job_id, url_ids, worker=self.request.hostname):
            queue.submit(job_id, ids, delay)


@signals.worker_ready.connect
def load_models(**_kwargs) -> None:
    """Load and warm the models before the first task, so its latency is the pipeline's alone."""
    flask_app.extensions["pipeline"].load()
    flask_app.logger.info("models loaded")
