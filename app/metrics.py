"""Prometheus metrics. Under gunicorn, PROMETHEUS_MULTIPROC_DIR (set by gunicorn.conf.py) makes every
worker write its samples to files that /metrics aggregates, so counts are right across workers."""
from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

REQUESTS = Counter("http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("http_request_duration_seconds", "HTTP request latency", ["method", "route"],
                    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 1.5, 2.5, 5, 10, 30))
MODEL_SECONDS = Histogram("pipeline_stage_seconds", "Time per pipeline stage", ["stage"],
                          buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
FETCH_FAILURES = Counter("fetch_failures_total", "Image downloads refused or failed", ["code"])
CHANGE_POSTS = Counter("change_webhook_posts_total", "Changes-feed webhook POSTs by outcome", ["outcome"])
CHANGE_ENTRIES = Counter("change_webhook_entries_total", "Changes-feed entries receivers acknowledged")
JOB_URLS_RESUMED = Counter("job_urls_resumed_total", "Open URLs of stalled jobs enqueued again by the stall watch")


def render() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
