"""The changes feed (GET /v1/changes): every write that changes what the API says about items leaves one
entry in its own transaction, pages walk it in order without skipping, each entry carries the current
state of what it names, and on PostgreSQL an entry of a transaction still running holds back the later
ones instead of being passed over."""
import datetime as dt
import io
import random
import threading
import time

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app import changes as changes_module
from app import db
from app.models import Analysis, Change

from .servers import garment_photo


def post_url(client, url, **extra):
    response = client.post("/v1/analyses", json={"image_url": url, **extra})
    assert response.status_code in (200, 201), response.json
    return response.json


def feed(client, **query) -> dict:
    response = client.get("/v1/changes", query_string=query)
    assert response.status_code == 200, response.json
    return response.json


def summary(page: dict) -> list[tuple]:
    """(type, the id it names) of each entry."""
    return [(c["type"], c.get("item_id") or c.get("analysis_id") or c["image_id"]) for c in page["changes"]]


def test_the_feed_follows_analyses_labels_refreshes_and_deletes(client, image_server):
    assert feed(client) == {"changes": [], "next_cursor": feed(client, **{"from": "now"})["next_cursor"],
                            "caught_up": True}
    first = post_url(client, image_server.url("/shirt.jpg"))
    post_url(client, image_server.url("/same-shirt.jpg"))  # the same bytes: nothing new is stored
    whole = first["items"][0]["id"]
    assert client.put(f"/v1/items/{whole}/labels", json={"articleType": "Flats"}).status_code == 200
    refreshed = post_url(client, image_server.url("/shirt.jpg"), refresh=True)
    new_whole = refreshed["items"][0]["id"]
    assert client.delete(f"/v1/items/{new_whole}/labels").status_code == 200  # the labels came along: withdrawn
    blue = post_url(client, image_server.url("/blue.jpg"))
    assert client.delete(f"/v1/images/{first['image']['id']}").status_code == 200

    page = feed(client)
    assert summary(page) == [("analysis.created", first["id"]), ("item.labelled", whole),
                             ("analysis.created", refreshed["id"]), ("item.labelled", new_whole),
                             ("analysis.created", blue["id"]), ("image.deleted", first["image"]["id"])]
    assert page["caught_up"] is True
    created, labelled, refresh, unlabelled, other, deleted = page["changes"]
    # Each entry carries what it names as it is now: the shirt's analyses are gone, the blue one is as stored.
    assert created["analysis"] is None and labelled["item"] is None and refresh["analysis"] is None
    assert created["replaces"] == [] and refresh["replaces"] == [first["id"]]
    assert other["analysis"] == client.get(f"/v1/analyses/{blue['id']}").json
    assert deleted == {"id": deleted["id"], "type": "image.deleted", "at": deleted["at"],
                       "image_id": first["image"]["id"], "analyses": [refreshed["id"]]}
    assert unlabelled["analysis_id"] == refreshed["id"] and unlabelled["image_id"] == first["image"]["id"]

    # Pages of one walk the same entries, and each page's cursor reads on from it.
    walked, cursor = [], None
    while True:
        small = feed(client, limit=2, **({"cursor": cursor} if cursor else {}))
        walked += small["changes"]
        cursor = small["next_cursor"]
        if small["caught_up"]:
            break
    assert [c["id"] for c in walked] == [c["id"] for c in page["changes"]]
    assert feed(client, cursor=cursor) == {"changes": [], "next_cursor": cursor, "caught_up": True}
    assert feed(client, **{"from": "now"})["next_cursor"] == cursor
    # Without expand, entries only name things (a client that fetches what it needs by id).
    assert all("analysis" not in c and "item" not in c for c in feed(client, expand="false")["changes"])


def test_an_item_labelled_shows_its_labels_and_later_entries_come_after_the_cursor(client):
    photo = garment_photo((200, 30, 40), seed=3)
    analysis = client.post("/v1/analyses", data={"image": (io.BytesIO(photo), "p.jpg")},
                           content_type="multipart/form-data").json
    cursor = feed(client)["next_cursor"]
    item = analysis["items"][0]
    client.put(f"/v1/items/{item['id']}/labels", json={"articleType": "Flats", "gender": "Women"})
    page = feed(client, cursor=cursor)
    assert summary(page) == [("item.labelled", item["id"])]
    shown = page["changes"][0]["item"]
    assert shown == client.get("/v1/items", query_string={"articleType": "Flats"}).json["items"][0]
    assert shown["labels"]["tags"]["articleType"] == "Flats" and shown["category"]["articleType"]["confidence"] == 1.0


def test_forgetting_a_url_updates_the_analyses_that_showed_it(client, image_server):
    analysis = post_url(client, image_server.url("/shirt.jpg"))
    post_url(client, image_server.url("/same-shirt.jpg"))
    cursor = feed(client)["next_cursor"]
    assert client.delete("/v1/images", query_string={"url": image_server.url("/shirt.jpg")}).status_code == 200
    page = feed(client, cursor=cursor)
    assert summary(page) == [("analysis.updated", analysis["id"])]
    assert page["changes"][0]["analysis"]["image"]["url"] == image_server.url("/same-shirt.jpg")


def test_a_failed_write_leaves_no_entry(app, client, image_server, monkeypatch):
    real_record = changes_module.record

    def record_then_fail(session, type, **names):
        real_record(session, type, **names)
        session.flush()  # the entry is written in the transaction, then the write fails
        raise RuntimeError("disk full")

    monkeypatch.setattr(changes_module, "record", record_then_fail)
    response = client.post("/v1/analyses", json={"image_url": image_server.url("/blue.jpg")})
    assert response.status_code == 500
    with app.app_context():
        assert db.session().scalar(select(func.count()).select_from(Change)) == 0
        assert db.session().scalar(select(func.count()).select_from(Analysis)) == 0
    monkeypatch.undo()
    post_url(client, image_server.url("/blue.jpg"))  # the service lives on
    assert [c["type"] for c in feed(client)["changes"]] == ["analysis.created"]


def test_bad_queries_are_refused(client, keyed_app):
    for query in ({"cursor": "not-ours"}, {"cursor": "eyJhZnRlciI6IDV9"}, {"limit": 0}, {"limit": 501},
                  {"limit": "many"}, {"expand": "maybe"}, {"from": "yesterday"}, {"from": "now", "cursor": "x"}):
        response = client.get("/v1/changes", query_string=query)
        assert response.status_code == 400 and response.json["code"] == "invalid_request", query
    assert keyed_app.test_client().get("/v1/changes").status_code == 401


def test_a_transaction_still_running_holds_back_the_entries_after_it(app, client, image_server, database_url):
    """The hazard of reading by id alone: a transaction draws id 1, another draws id 2 and commits first; a
    reader that passed 2 would never see 1. The feed waits for the first instead."""
    if not database_url.startswith("postgresql"):
        pytest.skip("concurrent writers are tested on PostgreSQL (set TEST_DATABASE_URL); SQLite has one at a time")
    slow = Session(app.extensions["engine"])
    try:
        changes_module.record(slow, "image.deleted", image_id=999, detail={"analyses": []})
        slow.flush()  # id drawn, transaction running
        later = post_url(client, image_server.url("/blue.jpg"))  # draws the next id and commits
        held = feed(client)
        assert held["changes"] == [] and held["caught_up"] is True
        slow.commit()
    finally:
        slow.close()
    page = feed(client, cursor=held["next_cursor"])
    assert summary(page) == [("image.deleted", 999), ("analysis.created", later["id"])]


def test_a_reader_among_concurrent_writers_sees_every_entry_once(app, database_url):
    """Writers that draw ids and commit in scrambled order while a reader follows the feed page by page:
    the reader ends with every entry, none twice (on PostgreSQL; SQLite has one writer at a time)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("concurrent writers are tested on PostgreSQL (set TEST_DATABASE_URL)")
    engine = app.extensions["engine"]
    rng = random.Random(7)
    delays = [[rng.uniform(0, 0.02) for _ in range(25)] for _ in range(4)]

    def write(writer: int):
        for n, delay in enumerate(delays[writer]):
            with Session(engine) as session:
                changes_module.record(session, "image.deleted", image_id=writer * 1000 + n, detail={"analyses": []})
                session.flush()  # the id is drawn here, the commit comes later
                time.sleep(delay)
                session.commit()

    writers = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in writers:
        thread.start()
    seen, cursor = [], None
    with Session(engine) as session:
        while True:
            done = not any(thread.is_alive() for thread in writers)
            page = changes_module.read_page(session, cursor, 7, expand=False)
            session.rollback()
            seen += [c["image_id"] for c in page["changes"]]
            cursor = page["next_cursor"]
            if done and page["caught_up"]:
                break
    assert len(seen) == len(set(seen)) == 100
    assert sorted(seen) == sorted(w * 1000 + n for w in range(4) for n in range(25))


def test_pruning_deletes_old_entries_expires_cursors_before_them_and_waits_for_subscriptions(app, client, image_server):
    first = post_url(client, image_server.url("/shirt.jpg"))
    second = post_url(client, image_server.url("/blue.jpg"))
    after_first = feed(client, limit=1)["next_cursor"]

    def age(analysis_id):  # the entry of this analysis as if made long ago
        with app.app_context():
            db.session().execute(update(Change).where(Change.analysis_id == analysis_id)
                                 .values(created_at=dt.datetime(2000, 1, 1)))
            db.session().commit()

    def prune(days="30"):
        result = app.test_cli_runner().invoke(args=["changes", "prune", "--older-than-days", days])
        assert result.exit_code == 0, result.output
        return result.output

    assert prune().startswith("0 entries deleted")  # nothing is old yet
    age(first["id"])
    assert prune().startswith("1 entries deleted")
    expired = client.get("/v1/changes")  # from the start: its first entry is gone
    assert expired.status_code == 410 and expired.json["code"] == "cursor_expired"
    assert summary(feed(client, cursor=after_first)) == [("analysis.created", second["id"])]  # nothing lost after it
    refused = client.post("/v1/subscriptions", json={"callback_url": image_server.url("/h"), "from": "start"})
    assert refused.status_code == 410 and refused.json["code"] == "cursor_expired"

    lagging = client.post("/v1/subscriptions", json={"callback_url": image_server.url("/h")}).json  # after `second`
    third = post_url(client, image_server.url("/img/3.jpg"))
    age(second["id"])
    age(third["id"])
    output = prune()
    assert output.startswith("1 entries deleted") and f"held back by subscription {lagging['id']}" in output
    assert summary(feed(client, cursor=lagging["cursor"])) == [("analysis.created", third["id"])]
    assert client.get("/v1/changes", query_string={"cursor": after_first}).status_code == 410
