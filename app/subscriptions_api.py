"""/v1/subscriptions: webhooks for the changes feed (delivered by app/change_delivery.py).

    POST   /v1/subscriptions        {"callback_url": ..., "types": [...], "from": "now" | "start"} -> 201
    GET    /v1/subscriptions        every subscription, oldest first
    GET    /v1/subscriptions/<id>   its state: cursor, entries delivered, failures, the last error
    DELETE /v1/subscriptions/<id>   stop delivering

`types` (default: all) picks the entries to POST; `from` where the feed starts for it: `now` (the
default: entries after the subscription) or `start` (every entry, those of analyses stored before the
feed existed included: a new copy filled by the webhook alone; `410 cursor_expired` once the feed has been
pruned). The callback URL passes the same address
checks as image URLs and job webhooks, when subscribing and again at every POST.
"""
from __future__ import annotations

from flask import Blueprint, current_app, request
from sqlalchemy import select

from . import db
from .auth import current_key_id
from .changes import CHANGE_TYPES, START, check_not_pruned, latest_cursor
from .errors import ApiError
from .jobs import webhook
from .models import ChangeSubscription, iso_utc, utcnow
from .store import encode_cursor

bp = Blueprint("subscriptions", __name__, url_prefix="/v1/subscriptions")


def subscription_json(subscription: ChangeSubscription) -> dict:
    return {"id": subscription.id, "callback_url": subscription.callback_url, "types": subscription.types,
            "state": subscription.state, "cursor": subscription.cursor, "delivered": subscription.delivered,
            "delivered_at": iso_utc(subscription.delivered_at), "failures": subscription.failures,
            "last_error": subscription.last_error, "next_attempt_at": iso_utc(subscription.next_attempt_at),
            "created_at": iso_utc(subscription.created_at)}


def _read_types(given) -> list[str] | None:
    if given is None:
        return None
    if not isinstance(given, list) or not given or not all(isinstance(t, str) for t in given):
        raise ApiError("invalid_request", f"types must be a non-empty list of: {', '.join(CHANGE_TYPES)}")
    unknown = sorted(set(given) - set(CHANGE_TYPES))
    if unknown:
        raise ApiError("invalid_request", f"unknown types: {', '.join(unknown)}; types: {', '.join(CHANGE_TYPES)}")
    return sorted(set(given), key=CHANGE_TYPES.index)


@bp.post("")
def subscribe():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError("invalid_request", "send JSON {\"callback_url\": ..., \"types\": [...], \"from\": \"now\"}")
    unknown = set(body) - {"callback_url", "types", "from"}
    if unknown:
        raise ApiError("invalid_request", f"unknown fields: {', '.join(sorted(unknown))}")
    url = body.get("callback_url")
    if not isinstance(url, str) or not url:
        raise ApiError("invalid_request", "callback_url is required")
    types = _read_types(body.get("types"))
    start = body.get("from", "now")
    if start not in ("now", "start"):
        raise ApiError("invalid_request", "from is 'now' (entries after this subscription) or 'start' (every entry)")
    webhook.validate_callback_url(url, current_app.config["SETTINGS"])
    session = db.session()
    if start == "start":
        check_not_pruned(session, START)
    subscription = ChangeSubscription(
        callback_url=url, types=types, cursor=latest_cursor(session) if start == "now" else encode_cursor(list(START)),
        state="active", failures=0, delivered=0, api_key_id=current_key_id(), created_at=utcnow())
    session.add(subscription)
    session.commit()
    return subscription_json(subscription), 201, {"Location": f"/v1/subscriptions/{subscription.id}"}


@bp.get("")
def listing():
    return {"subscriptions": [subscription_json(s) for s in
                              db.session().scalars(select(ChangeSubscription).order_by(ChangeSubscription.id))]}


def _subscription(subscription_id: int) -> ChangeSubscription:
    return db.get_or_not_found(db.session(), ChangeSubscription, subscription_id, "subscription")


@bp.get("/<int:subscription_id>")
def read(subscription_id: int):
    return subscription_json(_subscription(subscription_id))


@bp.delete("/<int:subscription_id>")
def unsubscribe(subscription_id: int):
    session = db.session()
    subscription = _subscription(subscription_id)
    body = subscription_json(subscription)
    session.delete(subscription)
    session.commit()
    return body
