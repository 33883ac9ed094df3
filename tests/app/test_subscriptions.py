"""Webhooks for the changes feed (/v1/subscriptions, app/change_delivery.py): entries POSTed signed and in
order, the cursor moving only on a 2xx, retries with a growing wait, one process at a time per
subscription, and the address checks of every other outgoing request."""
import datetime as dt
import json
import threading
import time
import uuid

from prometheus_client import REGISTRY
from sqlalchemy import update

from app import db
from app.change_delivery import ChangeDelivery
from app.jobs.webhook import signature
from app.models import ChangeSubscription

from .test_auth import new_key


def subscribe(client, url, **fields):
    response = client.post("/v1/subscriptions", json={"callback_url": url, **fields})
    assert response.status_code == 201, response.json
    return response.json


def posted(image_server, path) -> list[tuple[dict, bytes]]:
    return [(headers, body) for p, headers, body in image_server.httpd.posts if p == path]


def analyse(client, image_server, path="/shirt.jpg", **extra):
    response = client.post("/v1/analyses", json={"image_url": image_server.url(path), **extra})
    assert response.status_code in (200, 201), response.json
    return response.json


def make_due(app, subscription_id):
    """Skip the wait before the next attempt (the backoff itself is checked where it is set)."""
    with app.app_context():
        db.session().execute(update(ChangeSubscription).where(ChangeSubscription.id == subscription_id)
                             .values(next_attempt_at=dt.datetime(2000, 1, 1)))
        db.session().commit()


def test_entries_are_posted_signed_in_order_and_the_cursor_moves_on(app, client, image_server, settings):
    hook = f"/hook/{uuid.uuid4().hex}"
    subscription = subscribe(client, image_server.url(hook))
    assert subscription["state"] == "active" and subscription["delivered"] == 0 and subscription["types"] is None
    analysis = analyse(client, image_server)
    client.put(f"/v1/items/{analysis['items'][0]['id']}/labels", json={"articleType": "Flats"})
    delivery = app.extensions["change_delivery"]
    assert delivery.run_once() == 2

    [(headers, body)] = posted(image_server, hook)
    assert headers["X-FashionTagger-Signature"] == signature(settings.webhook_secret, headers["X-FashionTagger-Timestamp"], body)
    payload = json.loads(body)
    feed = client.get("/v1/changes").json
    assert payload == {"subscription_id": subscription["id"], "changes": feed["changes"], "next_cursor": feed["next_cursor"]}
    assert [c["type"] for c in payload["changes"]] == ["analysis.created", "item.labelled"]
    state = client.get(f"/v1/subscriptions/{subscription['id']}").json
    assert state["delivered"] == 2 and state["cursor"] == feed["next_cursor"] and state["failures"] == 0
    assert state["delivered_at"] is not None
    assert delivery.run_once() == 0 and len(posted(image_server, hook)) == 1  # nothing new: nothing sent


def test_types_pick_the_entries_and_from_start_reads_the_whole_feed(app, client, image_server):
    analysis = analyse(client, image_server)
    everything, deletions = f"/hook/{uuid.uuid4().hex}", f"/hook/{uuid.uuid4().hex}"
    subscribe(client, image_server.url(everything), **{"from": "start"})
    only_deletions = subscribe(client, image_server.url(deletions), types=["image.deleted"], **{"from": "start"})
    later = subscribe(client, image_server.url(f"/hook/{uuid.uuid4().hex}"))  # from now: the analysis is before it
    delivery = app.extensions["change_delivery"]
    assert delivery.run_once() == 1
    assert [c["type"] for c in json.loads(posted(image_server, everything)[0][1])["changes"]] == ["analysis.created"]
    assert posted(image_server, deletions) == []  # nothing of its type, yet its cursor moved past the analysis
    assert client.get(f"/v1/subscriptions/{only_deletions['id']}").json["cursor"] == client.get("/v1/changes").json["next_cursor"]
    assert client.get(f"/v1/subscriptions/{later['id']}").json["delivered"] == 0

    client.delete(f"/v1/images/{analysis['image']['id']}")
    assert delivery.run_once() == 3  # to all three
    [(_, body)] = posted(image_server, deletions)
    assert [(c["type"], c["image_id"]) for c in json.loads(body)["changes"]] == [("image.deleted", analysis["image"]["id"])]


def test_a_failed_post_keeps_the_cursor_and_is_retried_after_a_growing_wait(app, client, image_server, settings):
    hook = f"/hook/{uuid.uuid4().hex}"
    subscription = subscribe(client, image_server.url(hook))
    analyse(client, image_server)
    delivery = app.extensions["change_delivery"]
    waits = []
    for failure in range(1, settings.webhook_max_attempts + 1):
        image_server.httpd.post_statuses[:] = [500]
        before = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        assert delivery.run_once() == 0
        state = client.get(f"/v1/subscriptions/{subscription['id']}").json
        assert state["failures"] == failure and state["last_error"] == "the receiver answered 500"
        assert state["cursor"] == subscription["cursor"] and state["delivered"] == 0
        assert state["state"] == ("failing" if failure >= settings.webhook_max_attempts else "active")
        waits.append((dt.datetime.fromisoformat(state["next_attempt_at"][:-1]) - before).total_seconds())
        assert delivery.run_once() == 0  # not due yet: nothing is sent
        assert len(posted(image_server, hook)) == failure
        make_due(app, subscription["id"])
    assert all(later > earlier * 1.5 for earlier, later in zip(waits, waits[1:]))  # doubling (1 s, 2 s, 4 s, ...)
    image_server.httpd.post_statuses[:] = []
    acknowledged_before = REGISTRY.get_sample_value("change_webhook_posts_total", {"outcome": "acknowledged"}) or 0
    assert delivery.run_once() == 1  # the same entry, now acknowledged
    assert REGISTRY.get_sample_value("change_webhook_posts_total", {"outcome": "acknowledged"}) == acknowledged_before + 1
    assert REGISTRY.get_sample_value("change_webhook_posts_total", {"outcome": "failed"}) >= settings.webhook_max_attempts
    bodies = [json.loads(body) for _, body in posted(image_server, hook)]
    assert all(body == bodies[-1] for body in bodies)
    state = client.get(f"/v1/subscriptions/{subscription['id']}").json
    assert (state["state"], state["failures"], state["last_error"], state["delivered"]) == ("active", 0, None, 1)


def test_one_process_delivers_a_subscription_at_a_time(app, client, image_server, settings):
    hook = f"/hook/{uuid.uuid4().hex}"
    subscription = subscribe(client, image_server.url(hook))
    for path in ("/shirt.jpg", "/blue.jpg"):
        analyse(client, image_server, path)
    sessions = app.extensions["sessionmaker"]
    first, second = (ChangeDelivery(sessions, settings, owner=name) for name in ("first", "second"))
    with sessions() as session:
        assert first._claim(session, subscription["id"])
    assert second.run_once() == 0 and posted(image_server, hook) == []  # leased to the first
    with sessions() as session:  # the first stalls past its lease: the second takes over
        session.execute(update(ChangeSubscription).values(lease_until=dt.datetime(2000, 1, 1)))
        session.commit()
    assert second.run_once() == 2
    with sessions() as session:
        assert not first._advance(session, subscription["id"], "stale", 5)  # no longer its lease: nothing written
    assert client.get(f"/v1/subscriptions/{subscription['id']}").json["delivered"] == 2

    analyse(client, image_server, "/img/7.jpg")
    start = threading.Barrier(2)
    results = []

    def deliver(delivery):
        start.wait()
        results.append(delivery.run_once())

    threads = [threading.Thread(target=deliver, args=(d,)) for d in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [0, 1]
    ids = [c["id"] for _, body in posted(image_server, hook) for c in json.loads(body)["changes"]]
    assert len(ids) == len(set(ids)) == 3  # every entry once


def test_the_delivery_thread_posts_by_itself(app, client, image_server, settings):
    hook = f"/hook/{uuid.uuid4().hex}"
    subscribe(client, image_server.url(hook))
    delivery = ChangeDelivery(app.extensions["sessionmaker"], settings.replace(change_delivery_interval=0.05))
    delivery.start()
    try:
        analyse(client, image_server)
        deadline = time.monotonic() + 10
        while not posted(image_server, hook) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        delivery.stop()
    assert len(posted(image_server, hook)) == 1


def test_subscribing_checks_the_request(client, image_server, keyed_app):
    for body, code in [({"callback_url": "http://10.1.2.3/hook"}, "blocked_address"),
                       ({"callback_url": "http://169.254.169.254/latest"}, "blocked_address"),
                       ({"callback_url": "ftp://example.com/hook"}, "invalid_url"),
                       ({}, "invalid_request"), ({"callback_url": image_server.url("/h"), "types": ["x"]}, "invalid_request"),
                       ({"callback_url": image_server.url("/h"), "types": []}, "invalid_request"),
                       ({"callback_url": image_server.url("/h"), "from": "yesterday"}, "invalid_request"),
                       ({"callback_url": image_server.url("/h"), "secret": "s"}, "invalid_request")]:
        response = client.post("/v1/subscriptions", json=body)
        assert response.json["code"] == code, body
    assert client.get("/v1/subscriptions").json == {"subscriptions": []}  # none of those was stored
    made = subscribe(client, image_server.url("/h"), types=["item.labelled", "analysis.created", "item.labelled"])
    assert made["types"] == ["analysis.created", "item.labelled"]
    assert client.get("/v1/subscriptions").json == {"subscriptions": [made]}
    assert client.delete(f"/v1/subscriptions/{made['id']}").json == made
    assert client.get(f"/v1/subscriptions/{made['id']}").status_code == 404
    assert client.delete(f"/v1/subscriptions/{made['id']}").status_code == 404
    keyed = keyed_app.test_client()
    assert keyed.get("/v1/subscriptions").status_code == 401
    _, key = new_key(keyed_app)
    assert keyed.get("/v1/subscriptions", headers={"Authorization": f"Bearer {key}"}).status_code == 200
