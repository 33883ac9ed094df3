"""Job-finished webhooks: JSON body signed with HMAC-SHA256, sent through the same address checks as
image downloads, retried with backoff.

Receivers verify: hex(HMAC_SHA256(secret, f"{X-FashionTagger-Timestamp}.{raw body}")) equals the
`sha256=` value of X-FashionTagger-Signature, and reject old timestamps (replays).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time

import urllib3

from ..config import Settings
from ..errors import ApiError
from ..fetch import Deadline, checked_address, open_pool, parse_url

log = logging.getLogger(__name__)


def signature(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def validate_callback_url(url: str, settings: Settings) -> None:
    _scheme, host, port, _target = parse_url(url)
    checked_address(host, port, settings)


def post_once(url: str, body: bytes, settings: Settings) -> int:
    scheme, host, port, target = parse_url(url)
    deadline = Deadline(settings.fetch_deadline)  # a receiver that trickles its answer cannot hold a worker
    try:
        address = checked_address(host, port, settings, deadline)  # checked again at send time: DNS may have changed
        timestamp = str(int(time.time()))
        pool = open_pool(scheme, address, port, host, settings, deadline=deadline)
        try:
            response = pool.urlopen("POST", target, body=body, redirect=False, headers={
                "Host": host if port in (80, 443) else f"{host}:{port}", "Content-Type": "application/json",
                "User-Agent": settings.user_agent, "X-FashionTagger-Timestamp": timestamp,
                "X-FashionTagger-Signature": signature(settings.webhook_secret, timestamp, body)})
            deadline.check()
            return response.status
        finally:
            pool.close()
    finally:
        deadline.close()


def deliver(url: str, payload: dict, settings: Settings, sleep=time.sleep) -> tuple[bool, int]:
    """POST until a 2xx or `webhook_max_attempts`; returns (delivered, attempts)."""
    body = json.dumps(payload, sort_keys=True).encode()
    for attempt in range(1, settings.webhook_max_attempts + 1):
        try:
            status = post_once(url, body, settings)
            if 200 <= status < 300:
                return True, attempt
            log.warning("webhook %s answered %s (attempt %d)", url, status, attempt)
        except ApiError as error:
            if error.code in ("invalid_url", "blocked_address"):
                log.warning("webhook %s refused: %s", url, error.detail)
                return False, attempt
            log.warning("webhook %s failed: %s (attempt %d)", url, error.detail, attempt)
        except urllib3.exceptions.HTTPError as error:
            log.warning("webhook %s failed: %s (attempt %d)", url, type(error).__name__, attempt)
        if attempt < settings.webhook_max_attempts:
            sleep(settings.webhook_backoff * 2 ** (attempt - 1))
    return False, settings.webhook_max_attempts
