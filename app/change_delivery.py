"""Webhooks for the changes feed: each subscription's new entries POSTed to its callback URL.

A client that would rather be told than poll `GET /v1/changes` subscribes (`POST /v1/subscriptions`).
Every serving process (API worker, job worker) runs a daemon thread that every CHANGE_DELIVERY_INTERVAL
seconds takes each due subscription in turn, reads the feed after its cursor (pages of 100: the entries
of its types, with the states they carry, as `GET /v1/changes` gives them) and POSTs them, signed as job
webhooks are (app/jobs/webhook.py); a 2xx moves its cursor past them. Delivery is at least once and in
feed order: a POST whose answer is lost is sent again, so a receiver skips entry ids it has applied
(applying one twice is harmless anyway: entries carry current states).

One process at a time delivers a subscription: it takes a lease on the row (a conditional UPDATE only
one process wins) and renews it with every page; every write it makes names itself as the lease's owner,
so a process whose lease has lapsed changes nothing, and another takes over from the cursor the last
acknowledged POST stored. A failed POST (an error status, a timeout, a refused address) leaves the
cursor where it was, and the next attempt waits WEBHOOK_BACKOFF x 2^(failures - 1) seconds, at most
CHANGE_DELIVERY_MAX_BACKOFF; after WEBHOOK_MAX_ATTEMPTS failures in a row the subscription shows
`failing` and goes on retrying: the feed keeps every entry, so nothing is lost while a receiver is down.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import uuid

import urllib3
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from . import changes
from .config import Settings
from .errors import ApiError
from .jobs import webhook
from .metrics import CHANGE_ENTRIES, CHANGE_POSTS
from .models import ChangeSubscription, utcnow
from .periodic import PeriodicThread

log = logging.getLogger(__name__)

PAGE_SIZE = 100
PAGES_PER_TURN = 20  # then the next subscription gets its turn
LEASE = dt.timedelta(seconds=60)  # far above one page's read and POST (FETCH_DEADLINE)


class ChangeDelivery:
    def __init__(self, sessions: sessionmaker, settings: Settings, owner: str | None = None):
        self.sessions = sessions
        self.settings = settings
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._thread = PeriodicThread("change-delivery", settings.change_delivery_interval, self.run_once)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._thread.stop()

    # ---- one pass -----------------------------------------------------------------------------------

    def run_once(self) -> int:
        """Deliver to every subscription that is due; returns how many entries receivers acknowledged."""
        now = utcnow()
        with self.sessions() as session:
            due = session.scalars(select(ChangeSubscription.id).where(*self._free_and_due(now))
                                  .order_by(ChangeSubscription.id)).all()
        return sum(self.deliver(subscription_id) for subscription_id in due)

    @staticmethod
    def _free_and_due(now: dt.datetime) -> list:
        return [or_(ChangeSubscription.lease_until.is_(None), ChangeSubscription.lease_until < now),
                or_(ChangeSubscription.next_attempt_at.is_(None), ChangeSubscription.next_attempt_at <= now)]

    def deliver(self, subscription_id: int) -> int:
        """Take the subscription's lease and POST its entries, page after page, until it has caught up, a
        POST fails or its turn ends; returns how many entries were acknowledged."""
        acknowledged = 0
        with self.sessions() as session:
            if not self._claim(session, subscription_id):
                return 0
            try:
                for _ in range(PAGES_PER_TURN):
                    subscription = session.get(ChangeSubscription, subscription_id, populate_existing=True)
                    if subscription is None:  # deleted meanwhile
                        break
                    page = changes.read_page(session, subscription.cursor, PAGE_SIZE, expand=True)
                    session.commit()  # no transaction stays open while the receiver answers
                    wanted = [c for c in page["changes"] if not subscription.types or c["type"] in subscription.types]
                    if wanted:  # a page with none of its types only moves the cursor
                        error = self._post(subscription, wanted, page["next_cursor"])
                        CHANGE_POSTS.labels("failed" if error else "acknowledged").inc()
                        if error is not None:
                            self._failed(session, subscription, error)
                            break
                        CHANGE_ENTRIES.inc(len(wanted))
                    if not self._advance(session, subscription_id, page["next_cursor"], len(wanted)):
                        break  # the lease lapsed and another process has it
                    acknowledged += len(wanted)
                    if page["caught_up"]:
                        break
            finally:
                self._own(session, subscription_id, lease_owner=None, lease_until=None)
        return acknowledged

    def _claim(self, session: Session, subscription_id: int) -> bool:
        now = utcnow()
        claimed = session.execute(update(ChangeSubscription).where(
            ChangeSubscription.id == subscription_id, *self._free_and_due(now))
            .values(lease_owner=self.owner, lease_until=now + LEASE)).rowcount
        session.commit()
        return claimed == 1

    def _own(self, session: Session, subscription_id: int, **values) -> bool:
        """Write `values` to the subscription while this process holds its lease; False when it does not."""
        written = session.execute(update(ChangeSubscription).where(
            ChangeSubscription.id == subscription_id, ChangeSubscription.lease_owner == self.owner)
            .values(**values)).rowcount
        session.commit()
        return written == 1

    def _advance(self, session: Session, subscription_id: int, cursor: str, count: int) -> bool:
        now = utcnow()
        values = dict(cursor=cursor, failures=0, state="active", last_error=None, next_attempt_at=None,
                      lease_until=now + LEASE, delivered=ChangeSubscription.delivered + count)
        if count:
            values["delivered_at"] = now
        return self._own(session, subscription_id, **values)

    def _failed(self, session: Session, subscription: ChangeSubscription, error: str) -> None:
        failures = subscription.failures + 1  # read under this process's lease: no one else writes it
        wait = min(self.settings.webhook_backoff * 2 ** (failures - 1), self.settings.change_delivery_max_backoff)
        log.warning("change subscription %d: %s (failure %d, next attempt in %.0f s)", subscription.id, error,
                    failures, wait)
        self._own(session, subscription.id, failures=failures, last_error=error[:500],
                  state="failing" if failures >= self.settings.webhook_max_attempts else "active",
                  next_attempt_at=utcnow() + dt.timedelta(seconds=wait))

    def _post(self, subscription: ChangeSubscription, entries: list[dict], cursor: str) -> str | None:
        """POST the entries; None when the receiver acknowledged them (2xx), else what went wrong."""
        body = json.dumps({"subscription_id": subscription.id, "changes": entries, "next_cursor": cursor}).encode()
        try:
            status = webhook.post_once(subscription.callback_url, body, self.settings)
        except ApiError as error:
            return f"{error.code}: {error.detail}"
        except (urllib3.exceptions.HTTPError, OSError) as error:
            return f"{type(error).__name__}: {error}"
        except Exception as error:  # noqa: BLE001 - whatever a receiver does, it fails this POST, not the pass
            log.exception("change subscription %d: POST to %s failed", subscription.id, subscription.callback_url)
            return f"{type(error).__name__}: {error}"
        return None if 200 <= status < 300 else f"the receiver answered {status}"
