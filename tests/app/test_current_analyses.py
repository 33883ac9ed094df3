"""An image analysed again by other model bundles keeps its earlier analyses, but what the service says
about it now is its newest (current) one: listings, similarity searches and embedding backfills read that
one, the changes feed says which analysis a new one supersedes, and `flask retag` brings every stored
image up to the serving bundles."""
import datetime as dt
import io

from sqlalchemy import select

from app import db
from app.embeddings import pending_count
from app.models import Analysis, ItemEmbedding

from .servers import garment_photo
from .test_labels import label_votes  # noqa: F401  (fixture)

OLDER = "detector:old|classifier:old/category|classifier:old/style"


def upload(client, photo: bytes) -> dict:
    response = client.post("/v1/analyses", data={"image": (io.BytesIO(photo), "p.jpg")},
                           content_type="multipart/form-data")
    assert response.status_code in (200, 201), response.json
    return response.json


def post_url(client, url: str) -> dict:
    response = client.post("/v1/analyses", json={"image_url": url})
    assert response.status_code in (200, 201), response.json
    return response.json


def as_if_older_bundles_made(app, *analyses: dict) -> None:
    with app.app_context():
        session = db.session()
        for analysis in analyses:
            session.get(Analysis, analysis["id"]).bundle_key = OLDER
        session.commit()


def listed(client, **query) -> set[int]:
    response = client.get("/v1/items", query_string={"limit": 500, **query})
    assert response.status_code == 200, response.json
    return {item["id"] for item in response.json["items"]}


def item_ids(analysis: dict) -> set[int]:
    return {item["id"] for item in analysis["items"]}


def test_listings_searches_and_the_feed_read_each_images_current_analysis(app, client):
    photo = garment_photo((200, 40, 40), seed=11)
    first = upload(client, photo)
    other = upload(client, garment_photo((40, 40, 200), seed=12))
    as_if_older_bundles_made(app, first)
    second = upload(client, photo)  # the serving bundles have not analysed these bytes: a new analysis
    assert second["id"] > first["id"] and second["image"]["id"] == first["image"]["id"]

    assert listed(client) == item_ids(second) | item_ids(other)
    assert listed(client, analyses="all") == item_ids(first) | item_ids(second) | item_ids(other)
    assert listed(client, analyses="all", kind="product") == {a["items"][0]["id"] for a in (first, second, other)}
    bad = client.get("/v1/items?analyses=newest")
    assert (bad.status_code, bad.json["code"]) == (400, "invalid_request")
    # Both analyses stay readable, newest first.
    kept = client.get(f"/v1/images/{first['image']['id']}").json["analyses"]
    assert [(a["id"], a["current"]) for a in kept] == [(second["id"], True), (first["id"], False)]

    # The catalogue page lists the current items and points from a superseded analysis to the current one.
    grid = client.get("/catalogue?kind=product").get_data(as_text=True)
    assert f"/catalogue/analyses/{second['id']}" in grid and f"/catalogue/analyses/{first['id']}" not in grid
    old_page = client.get(f"/catalogue/analyses/{first['id']}").get_data(as_text=True)
    assert 'id="superseded"' in old_page and f"/catalogue/analyses/{second['id']}" in old_page
    assert 'id="superseded"' not in client.get(f"/catalogue/analyses/{second['id']}").get_data(as_text=True)

    # Similarity searches never answer a superseded item, even from the same image when asked for it.
    for query_item in (second["items"][0]["id"], first["items"][0]["id"]):
        found = client.get(f"/v1/items/{query_item}/similar?k=20&same_image=true")
        assert found.status_code == 200, found.json
        answered = {hit["item"]["id"] for hit in found.json["results"]}
        assert answered and not answered & item_ids(first)
    refused = client.get(f"/v1/items/{second['items'][0]['id']}/similar?analyses=all")
    assert (refused.status_code, refused.json["code"]) == (400, "invalid_request")

    # The feed says which analysis each new one superseded.
    created = [c for c in client.get("/v1/changes?expand=false").json["changes"] if c["type"] == "analysis.created"]
    assert [(c["analysis_id"], c["supersedes"], c["replaces"]) for c in created] == [
        (first["id"], None, []), (other["id"], None, []), (second["id"], first["id"], [])]

    # A backfill embeds only what is searched: the superseded items' missing embeddings are not pending.
    with app.app_context():
        session = db.session()
        for embedding in session.scalars(select(ItemEmbedding)):
            session.delete(embedding)
        session.commit()
        model = app.extensions["pipeline"].load().embedding_model
        assert pending_count(session, model) == len(item_ids(second) | item_ids(other))


def test_retag_analyses_the_stale_images_again_from_their_urls(app, client, image_server):
    shirt = post_url(client, image_server.url("/shirt.jpg"))
    blue = post_url(client, image_server.url("/blue.jpg"))
    uploaded = upload(client, garment_photo((90, 200, 90), seed=13))
    fresh = upload(client, garment_photo((200, 200, 90), seed=14))  # by the serving bundles: left alone
    as_if_older_bundles_made(app, shirt, blue, uploaded)
    runner = app.test_cli_runner()

    dry = runner.invoke(args=["retag", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "images up to date: 1; stale: 3" in dry.output and f"3  analysed as {OLDER}" in dry.output
    assert "stored from uploads (no URL to fetch again; upload them again): 1" in dry.output
    assert "nothing submitted (--dry-run)" in dry.output
    assert listed(client, analyses="all") == item_ids(shirt) | item_ids(blue) | item_ids(uploaded) | item_ids(fresh)

    result = runner.invoke(args=["retag"])
    assert result.exit_code == 0, result.output
    assert "submitted 2 URLs" in result.output and ": done in" in result.output
    with app.app_context():
        session = db.session()
        pipeline = app.extensions["pipeline"].load()
        current = {a.image_id: a for a in session.scalars(select(Analysis).order_by(Analysis.id))}
        assert {image_id: a.bundle_key for image_id, a in current.items()} == {
            shirt["image"]["id"]: pipeline.bundle_key, blue["image"]["id"]: pipeline.bundle_key,
            uploaded["image"]["id"]: OLDER, fresh["image"]["id"]: pipeline.bundle_key}
        retagged = {current[a["image"]["id"]].id for a in (shirt, blue)}
    assert not retagged & {shirt["id"], blue["id"]}  # new analyses, the old ones kept
    now_listed = listed(client)
    assert not now_listed & (item_ids(shirt) | item_ids(blue))
    assert item_ids(uploaded) | item_ids(fresh) <= now_listed

    again = runner.invoke(args=["retag"])
    assert "images up to date: 3; stale: 1" in again.output and "nothing submitted" in again.output


def test_labels_carried_to_the_current_analysis_vote_once(app, client, label_votes):
    photo = garment_photo((30, 160, 160), seed=15)
    first = upload(client, photo)
    assert client.put(f"/v1/items/{first['items'][0]['id']}/labels", json={"usage": "Formal"}).status_code == 200
    label_votes.refresh()
    assert label_votes.rows == 1
    as_if_older_bundles_made(app, first)
    second = upload(client, photo)
    assert second["items"][0]["labels"]["tags"] == {"usage": "Formal"}  # carried over
    label_votes.wait()
    label_votes.refresh()
    assert label_votes.rows == 1  # the superseded item's labels no longer vote beside the carried ones


def test_prune_superseded_deletes_old_analyses_after_their_grace_period(app, client):
    long_ago, recently = garment_photo((120, 40, 160), seed=16), garment_photo((160, 120, 40), seed=17)
    old_first, recent_first = upload(client, long_ago), upload(client, recently)
    assert client.put(f"/v1/items/{old_first['items'][0]['id']}/labels", json={"season": "Winter"}).status_code == 200
    as_if_older_bundles_made(app, old_first, recent_first)
    old_second, recent_second = upload(client, long_ago), upload(client, recently)
    with app.app_context():  # the first image was analysed again ten days ago
        session = db.session()
        session.get(Analysis, old_second["id"]).created_at -= dt.timedelta(days=10)
        session.commit()
    runner = app.test_cli_runner()

    dry = runner.invoke(args=["images", "prune-superseded", "--older-than-days", "7", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert f"would delete 1 superseded analyses ({len(old_first['items'])} items) of 1 images" in dry.output
    assert client.get(f"/v1/analyses/{old_first['id']}").status_code == 200

    done = runner.invoke(args=["images", "prune-superseded", "--older-than-days", "7"])
    assert done.exit_code == 0, done.output
    assert f"deleted 1 superseded analyses ({len(old_first['items'])} items) of 1 images" in done.output
    assert client.get(f"/v1/analyses/{old_first['id']}").status_code == 404
    for kept in (old_second, recent_first, recent_second):
        assert client.get(f"/v1/analyses/{kept['id']}").status_code == 200
    assert listed(client, analyses="all") == item_ids(old_second) | item_ids(recent_first) | item_ids(recent_second)
    labels = client.get(f"/v1/analyses/{old_second['id']}").json["items"][0]["labels"]
    assert labels["tags"] == {"season": "Winter"}  # carried to the current analysis, kept there
    again = runner.invoke(args=["images", "prune-superseded", "--older-than-days", "7"])
    assert "deleted 0 superseded analyses (0 items) of 0 images" in again.output


def test_one_item_reads_as_listed_and_says_whether_it_is_current(app, client):
    photo = garment_photo((90, 160, 40), seed=13)
    first = upload(client, photo)
    item_id = first["items"][0]["id"]
    as_listed = next(item for item in client.get("/v1/items", query_string={"limit": 500}).json["items"]
                     if item["id"] == item_id)
    assert client.get(f"/v1/items/{item_id}").json == as_listed | {"current": True}
    as_if_older_bundles_made(app, first)
    upload(client, photo)  # a newer analysis supersedes the first: its item stays readable, not current
    superseded = client.get(f"/v1/items/{item_id}")
    assert superseded.status_code == 200 and superseded.json["current"] is False
    missing = client.get("/v1/items/999999")
    assert (missing.status_code, missing.json["code"]) == (404, "not_found")
