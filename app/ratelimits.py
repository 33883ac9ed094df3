"""Per-key limits with Flask-Limiter: a request rate over every /v1 route together, and a quota of job
URLs (a 10,000-URL job costs 10,000). Counted in Redis when there is one (all workers share the count),
else in this process's memory. Keyless requests (API_KEYS_REQUIRED off) are not limited.
A breach is 429 `rate_limited` with Retry-After."""
from __future__ import annotations

import logging
import math
import time

from flask import Flask, current_app
from flask_limiter import Limiter
from flask_limiter.errors import RateLimitExceeded
from limits import parse

from .auth import current_client
from .errors import ApiError

log = logging.getLogger(__name__)


def storage_uri(settings) -> str:
    if settings.rate_limit_storage_url:
        return settings.rate_limit_storage_url
    if settings.broker_url and settings.broker_url.startswith(("redis://", "rediss://")):
        return settings.broker_url
    return "memory://"


def _client_key() -> str:
    client = current_client()
    # The random prefix too: a database restored or recreated with the same ids starts fresh counts.
    return f"key-{client.id}-{client.prefix}" if client else "anonymous"


def _retry_after(reset_at: float) -> str:
    return str(max(1, math.ceil(reset_at - time.time())))


def init_app(app: Flask) -> None:
    settings = app.config["SETTINGS"]
    limiter = Limiter(
        _client_key, app=app, key_prefix="fashion-tagger",
        # One budget per key across all routes (evaluated before the exemption, so never None).
        application_limits=[lambda: current_client().rate_limit if current_client() else settings.api_key_rate_limit],
        application_limits_exempt_when=lambda: current_client() is None,
        storage_uri=storage_uri(settings), storage_options={"socket_connect_timeout": 1, "socket_timeout": 1}
        if storage_uri(settings).startswith("redis") else {},
        # Redis down: count in memory meanwhile rather than refuse (or fail) every request.
        swallow_errors=True, in_memory_fallback_enabled=True,
        # X-RateLimit-Limit / -Remaining / -Reset on every keyed response: a batch client paces itself
        # instead of learning its budget from 429s.
        headers_enabled=True)
    app.extensions["rate_limiter"] = limiter

    def breached(error: RateLimitExceeded):
        current = limiter.current_limit
        retry = _retry_after(current.reset_at) if current else "1"
        return ApiError("rate_limited", f"more than {error.description} for this API key",
                        headers={"Retry-After": retry}).response()

    app.register_error_handler(RateLimitExceeded, breached)


def check_job_urls(count: int) -> None:
    """429 unless the key's job-URL quota has room for `count` more URLs. Counts nothing: call
    charge_job_urls once the job is stored and enqueued, so a job refused for any reason costs nothing.
    (Two submissions racing between check and charge can overshoot by one job; that is accepted.)"""
    client = current_client()
    if client is None:
        return
    strategy = current_app.extensions["rate_limiter"].limiter
    quota = parse(client.job_url_quota)
    try:
        if strategy.test(quota, "job-urls", _client_key(), cost=count):
            return
        reset_at = strategy.get_window_stats(quota, "job-urls", _client_key()).reset_time
    except Exception as error:  # noqa: BLE001 - the quota store is down: do not refuse work for that
        log.warning("job-URL quota not checked: %s", error)
        return
    raise ApiError("rate_limited", f"{count} URLs would exceed this API key's job-URL quota ({client.job_url_quota})",
                   headers={"Retry-After": _retry_after(reset_at)}, quota=client.job_url_quota)


def charge_job_urls(count: int) -> None:
    """Count `count` URLs against the key's job-URL quota."""
    client = current_client()
    if client is None:
        return
    try:
        current_app.extensions["rate_limiter"].limiter.hit(parse(client.job_url_quota), "job-urls", _client_key(),
                                                          cost=count)
    except Exception as error:  # noqa: BLE001 - see check_job_urls
        log.warning("job-URL quota not counted: %s", error)
