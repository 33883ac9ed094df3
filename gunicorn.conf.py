"""gunicorn settings. Models load in each worker AFTER the fork (post_fork), never in the master:
forking a process that holds torch/TensorFlow thread pools is unsafe, and each worker needs its own."""
import os
import tempfile

import torch  # noqa: F401  (torch and torchvision before TensorFlow in every entry point)
import torchvision  # noqa: F401

# Prometheus multiprocess mode: each worker writes samples here, /metrics aggregates them.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="fashion-tagger-metrics-")

bind = os.environ.get("BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "1"))
# Above the fetch deadline plus model time on a slow CPU.
timeout = int(float(os.environ.get("FETCH_DEADLINE", "15")) + 60)
graceful_timeout = 30
max_requests = int(os.environ.get("MAX_REQUESTS", "1000"))
max_requests_jitter = int(os.environ.get("MAX_REQUESTS_JITTER", "100"))
preload_app = False
accesslog = None  # the app logs each request as JSON with its request id
loglevel = os.environ.get("LOG_LEVEL", "info").lower()


def post_fork(server, worker):
    # Keep each worker's math libraries to its share of the cores.
    cores = max(1, (os.cpu_count() or 1) // max(1, workers))
    torch.set_num_threads(cores)


def post_worker_init(worker):
    worker.wsgi.extensions["pipeline"].load()  # load + warm up before this worker takes requests
    worker.log.info("models loaded and warmed up in worker %s", worker.pid)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
