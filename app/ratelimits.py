"""Per-key limits with Flask-Limiter: a request rate over every /v1 route together, and a quota of job
URLs (a 10,000-URL job costs 10,000). Counted in Redis when there is one (all workers share the count),
else in this process's memory. Keyless requests (API_KEYS_REQUIRED off) are not limited.
A breach is 429 `rate_limited` with Retry-After; a job larger than the whole job-URL quota, which no wait
would let through, is 413 `job_exceeds_quota` without one."""
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


# Answers a wait can change: only these keep a Retry-After.
RETRYABLE_STATUSES = (429, 503)


def init_app(app: Flask) -> None:
    settings = app.config["SETTINGS"]

    # Flask-Limiter puts Retry-After (the request-rate window's end) on every keyed answer. On any other
    # answer than 429 or 503 it would tell a client to send the same request again, e.g. a 413
    # job_exceeds_quota that no wait lets through. Registered before the Limiter, so that it runs after it
    # (Flask runs after_request functions in reverse order of registration).
    @app.after_request
    def retry_after_only_where_a_wait_helps(response):
        if response.status_code not in RETRYABLE_STATUSES:
            response.headers.pop("Retry-After", None)
        return response

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
    """Refuse a job the key's job-URL quota has no room for: 413 `job_exceeds_quota` when it is larger than
    the whole quota (it can never fit, so there is nothing to wait for), else 429 with Retry-After when it
    would fit once the window frees. Counts nothing: call charge_job_urls once the job is stored and
    enqueued, so a job refused for any reason costs nothing.
    (Two submissions racing between check and charge can overshoot by one job; that is accepted.)"""
    client = current_client()
    if client is None:
        return
    quota = parse(client.job_url_quota)
    if count > quota.amount:  # decided without the quota store: it is the same answer in every window
        raise ApiError("job_exceeds_quota", f"{count} URLs in one job, but this API key's job-URL quota is "
                       f"{client.job_url_quota}: no wait lets this job through; split it into jobs of at most "
                       f"{quota.amount} URLs, each submitted when the quota has room for it",
                       quota=client.job_url_quota, max_urls=quota.amount)
    strategy = current_app.extensions["rate_limiter"].limiter
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
