"""Similarity search: embeddings stored with every item, GET /v1/items/<id>/similar with the catalogue
filters, POST /v1/search by URL or upload (nothing stored unless asked), each process's index current
with items other processes store, and `flask embeddings backfill` for items stored without one."""
import io

import numpy as np
import pytest
from sqlalchemy import delete, func, select

from app import create_app, db
from app.embeddings import from_bytes
from app.models import Analysis, Item, ItemEmbedding, Thumbnail

from .servers import garment_photo


def upload(client, photo: bytes, path="/v1/analyses", **query):
    return client.post(path, query_string=query, data={"image": (io.BytesIO(photo), "photo.jpg")},
                       content_type="multipart/form-data")


def count(app, model) -> int:
    with app.app_context():
        return db.session().scalar(select(func.count()).select_from(model))


RED, RED_AGAIN, BLUE = garment_photo((200, 30, 40), seed=0), garment_photo((205, 35, 45), seed=7), garment_photo((30, 60, 200), seed=1)


@pytest.fixture
def catalogue(client):
    """Three analysed photos: two near-identical red tops and a blue one; returns their analyses."""
    return [upload(client, photo).json for photo in (RED, RED_AGAIN, BLUE)]


def test_every_stored_item_has_a_unit_embedding_of_the_serving_classifier(app, catalogue, pipeline):
    with app.app_context():
        rows = db.session().scalars(select(ItemEmbedding)).all()
        items = db.session().scalar(select(func.count()).select_from(Item))
        assert len(rows) == items and {r.model for r in rows} == {pipeline.embedding_model}
        for row in rows:
            vector = from_bytes(row.vector)
            assert vector.shape == (pipeline.classifier.embedding_dim,) and abs(float(np.linalg.norm(vector)) - 1) < 1e-2
        assert len(db.session().scalars(select(Thumbnail)).all()) == 3  # one per image, for the page and backfill
    assert "embedding" not in catalogue[0]["items"][0]  # not part of the JSON


def test_similar_items_rank_the_near_duplicate_first(client, catalogue, pipeline):
    red_product = catalogue[0]["items"][0]["id"]
    response = client.get(f"/v1/items/{red_product}/similar", query_string={"k": 5, "kind": "product"})
    assert response.status_code == 200, response.json
    body = response.json
    assert body["item"]["id"] == red_product and body["model"] == pipeline.embedding_model
    assert body["search"] == {"method": "index+filter", "index": "exact", "index_size": body["search"]["index_size"],
                              "query_expansion": min(20, body["search"]["index_size"] - len(catalogue[0]["items"]))}
    results = body["results"]
    assert [r["item"]["analysis_id"] for r in results] == [catalogue[1]["id"], catalogue[2]["id"]]
    assert results[0]["score"] > results[1]["score"] and all(-1 <= r["score"] <= 1.0001 for r in results)
    assert all(r["item"]["kind"] == "product" for r in results)
    # Unfiltered: items of the query's own image are left out unless asked for.
    everything = client.get(f"/v1/items/{red_product}/similar", query_string={"k": 50}).json["results"]
    assert catalogue[0]["id"] not in {r["item"]["analysis_id"] for r in everything}
    assert len(everything) == sum(len(a["items"]) for a in catalogue[1:])
    same = client.get(f"/v1/items/{red_product}/similar", query_string={"k": 50, "same_image": "true"}).json["results"]
    assert red_product not in {r["item"]["id"] for r in same} and len(same) == len(everything) + len(catalogue[0]["items"]) - 1


def test_filters_apply_and_a_rare_filter_searches_its_subset_exactly(app, catalogue, settings, pipeline):
    blue_label = catalogue[2]["items"][0]["style"]["baseColour"]["label"]
    strict = create_app(settings.replace(similarity_overfetch=1))  # over-fetching k x 1 misses
    strict.extensions["pipeline"].set(pipeline)
    body = strict.test_client().get(f"/v1/items/{catalogue[0]['items'][0]['id']}/similar",
                                    query_string={"k": 1, "colour": blue_label, "kind": "product"}).json
    assert body["results"] and all(r["item"]["style"]["baseColour"]["label"] == blue_label for r in body["results"])
    assert body["search"]["method"] in ("index+filter", "exact-subset")
    stored_types = {i["category"]["articleType"]["label"] for analysis in catalogue for i in analysis["items"]}
    absent = next(t for t in pipeline.classifier.taxonomy.labels["articleType"] if t not in stored_types)
    nothing = strict.test_client().get(f"/v1/items/{catalogue[0]['items'][0]['id']}/similar",
                                       query_string={"k": 1, "articleType": absent}).json
    assert nothing["results"] == [] and nothing["search"]["method"] == "exact-subset"
    strict.extensions["engine"].dispose()


def test_the_index_sees_items_stored_by_another_process(app, client, settings, pipeline):
    first = upload(client, RED).json
    query = first["items"][0]["id"]
    assert client.get(f"/v1/items/{query}/similar").json["results"] == []  # builds this process's index
    other_worker = create_app(settings)  # another gunicorn worker or a Celery worker: its own process state
    other_worker.extensions["pipeline"].set(pipeline)
    added = upload(other_worker.test_client(), RED_AGAIN).json
    other_worker.extensions["engine"].dispose()
    results = client.get(f"/v1/items/{query}/similar", query_string={"kind": "product"}).json["results"]
    assert [r["item"]["analysis_id"] for r in results] == [added["id"]]  # no restart


def test_refreshed_items_disappear_from_results(client, image_server):
    query = client.post("/v1/analyses", json={"image_url": image_server.url("/shirt.jpg")}).json["items"][0]["id"]
    old = client.post("/v1/analyses", json={"image_url": image_server.url("/blue.jpg")}).json
    assert old["id"] in {r["item"]["analysis_id"] for r in client.get(f"/v1/items/{query}/similar").json["results"]}
    new = client.post("/v1/analyses", json={"image_url": image_server.url("/blue.jpg"), "refresh": True}).json
    found = {r["item"]["analysis_id"] for r in client.get(f"/v1/items/{query}/similar").json["results"]}
    assert old["id"] not in found and new["id"] in found


def test_search_by_upload_stores_nothing(app, client, catalogue):
    before = (count(app, Analysis), count(app, Item), count(app, ItemEmbedding))
    query_photo = garment_photo((198, 28, 42), seed=3)
    response = upload(client, query_photo, "/v1/search", k=2, kind="product")
    assert response.status_code == 200, response.json
    body = response.json
    assert body["stored"] is False and body["analysis_id"] is None
    assert (count(app, Analysis), count(app, Item), count(app, ItemEmbedding)) == before
    assert body["queries"][0]["item"]["kind"] == "product" and "embedding" not in body["queries"][0]["item"]
    product = body["queries"][0]["results"]
    assert len(product) == 2 and product[0]["item"]["analysis_id"] in (catalogue[0]["id"], catalogue[1]["id"])
    assert len(body["queries"]) == len(upload(client, query_photo, "/v1/analyses").json["items"])  # one per item
    only_product = upload(client, query_photo, "/v1/search", garments="false").json
    assert len(only_product["queries"]) == 1


def test_search_by_url_and_store(app, client, image_server, catalogue):
    response = client.post("/v1/search", query_string={"k": 3},
                           json={"image_url": image_server.url("/img/5.jpg"), "store": True})
    assert response.status_code == 200, response.json
    body = response.json
    assert body["stored"] is True and body["analysis_id"]
    assert client.get(f"/v1/analyses/{body['analysis_id']}").status_code == 200
    for query in body["queries"]:  # never itself
        assert body["analysis_id"] not in {r["item"]["analysis_id"] for r in query["results"]}
    # Seen before: answered from the stored embeddings, still stores nothing new.
    again = client.post("/v1/search", json={"image_url": image_server.url("/img/5.jpg")}).json
    assert again["analysis_id"] == body["analysis_id"] and count(app, Analysis) == 4
    # Storing ran the whole pipeline: its timings say so, as a search that stores nothing does.
    assert {"fetch", "decode", "detect", "classify"} <= set(body["timings_ms"])


@pytest.mark.parametrize("method, path, flag", [("get", "/v1/items/{item}/similar", "same_image"),
                                                ("post", "/v1/search", "garments")])
def test_a_bad_flag_is_named_and_refused_before_any_download(client, image_server, catalogue, method, path, flag):
    hits_before = len(image_server.httpd.hits)  # the server is shared with earlier tests
    response = getattr(client, method)(path.format(item=catalogue[0]["items"][0]["id"]), query_string={flag: "maybe"},
                                       json={"image_url": image_server.url("/img/7.jpg")} if method == "post" else None)
    assert (response.status_code, response.json["code"]) == (400, "invalid_request")
    assert response.json["detail"] == f"{flag} must be a boolean"
    assert len(image_server.httpd.hits) == hits_before


@pytest.mark.parametrize("query, code, status", [
    ("k=0", "invalid_request", 400), ("k=101", "invalid_request", 400), ("k=x", "invalid_request", 400),
    ("kind=shoe", "invalid_request", 400), ("min_confidence=3", "invalid_request", 400)])
def test_bad_similarity_queries(client, catalogue, query, code, status):
    response = client.get(f"/v1/items/{catalogue[0]['items'][0]['id']}/similar?{query}")
    assert (response.status_code, response.json["code"]) == (status, code)


def test_search_errors(client, image_server):
    assert client.get("/v1/items/999/similar").json["code"] == "not_found"
    assert client.post("/v1/search", json={"image_url": image_server.url("/page.html")}).json["code"] == "unsupported_media_type"
    assert client.post("/v1/search", json={"image_url": "x", "refresh": True}).json["code"] == "invalid_request"
    assert client.post("/v1/search", json={"image_url": image_server.url("/shirt.jpg"), "store": "maybe"}).json["code"] == "invalid_request"


def test_an_item_without_embedding_answers_409_until_backfilled(app, client, catalogue, pipeline):
    item_id = catalogue[0]["items"][0]["id"]
    with app.app_context():
        session = db.session()
        original = from_bytes(session.scalar(select(ItemEmbedding.vector).where(ItemEmbedding.item_id == item_id)))
        session.execute(delete(ItemEmbedding))
        session.commit()
    response = client.get(f"/v1/items/{item_id}/similar")
    assert (response.status_code, response.json["code"]) == (409, "embedding_unavailable")
    result = app.test_cli_runner().invoke(args=["embeddings", "backfill"])
    assert result.exit_code == 0, result.output
    assert f"{pipeline.embedding_model}: {sum(len(a['items']) for a in catalogue)} items embedded" in result.output
    assert "from thumbnails 3" in result.output
    with app.app_context():
        again = from_bytes(db.session().scalar(select(ItemEmbedding.vector).where(ItemEmbedding.item_id == item_id)))
    assert float(original @ again) > 0.9  # from the 384 px thumbnail, close to the original's
    assert client.get(f"/v1/items/{item_id}/similar").status_code == 200
    status = app.test_cli_runner().invoke(args=["embeddings", "status"]).output
    assert f"without an embedding from {pipeline.embedding_model}: 0 items" in status


def test_backfill_reads_a_garment_in_the_context_of_its_whole_image(app, client, pipeline, monkeypatch):
    # A garment's profile reads its category as the pipeline read it: constrained by the detector's class
    # where the kind gate reads the WHOLE image as a street photo. So the whole image joins the batch even
    # when only its garment lacks an embedding, and nothing but the garment is written.
    from detection.inference import Detection

    found = [Detection((60.0, 70.0, 240.0, 260.0), np.ones((400, 300), bool), "footwear", 0.9)]
    monkeypatch.setattr(pipeline.detector, "detect", lambda images: [list(found) for _ in images])
    monkeypatch.setattr(pipeline.classifier, "image_kinds", lambda features: ["street"] * len(features))
    analysis = upload(client, RED).json
    product, garment = analysis["items"]
    assert garment["category"]["constrained_by"] == "detector:footwear"
    with app.app_context():
        session = db.session()
        vector_of = lambda item: from_bytes(session.scalar(select(ItemEmbedding.vector).where(ItemEmbedding.item_id == item)))
        original, product_vector = vector_of(garment["id"]), vector_of(product["id"])
        session.execute(delete(ItemEmbedding).where(ItemEmbedding.item_id == garment["id"]))
        session.commit()
    batches = []
    embed = pipeline.classifier.embed
    monkeypatch.setattr(pipeline.classifier, "embed", lambda crops, *args: batches.append(args) or embed(crops, *args))
    result = app.test_cli_runner().invoke(args=["embeddings", "backfill"])
    assert f"{pipeline.embedding_model}: 1 items embedded" in result.output, result.output
    (allowed, _, kinds, whole_image_rows), = batches
    assert whole_image_rows == [0, 0] and allowed[0] is None and allowed[1] and kinds == frozenset({"street"})
    with app.app_context():
        session = db.session()
        assert float(vector_of(garment["id"]) @ original) > 0.9  # from the thumbnail, as the pipeline made it
        np.testing.assert_array_equal(vector_of(product["id"]), product_vector)  # untouched


def test_backfill_refetches_an_image_without_thumbnail(app, client, image_server):
    analysis = client.post("/v1/analyses", json={"image_url": image_server.url("/blue.jpg")}).json
    with app.app_context():
        session = db.session()
        session.execute(delete(ItemEmbedding))
        session.execute(delete(Thumbnail))
        session.commit()
    result = app.test_cli_runner().invoke(args=["embeddings", "backfill", "--no-refetch"])
    assert "0 items embedded" in result.output and "skipped 1" in result.output
    result = app.test_cli_runner().invoke(args=["embeddings", "backfill"])
    assert f"{len(analysis['items'])} items embedded" in result.output and "refetched 1" in result.output
    assert count(app, Thumbnail) == 1  # kept on the way


def test_keys_and_openapi_cover_the_new_endpoints(keyed_app, catalogue, client):
    spec = client.get("/openapi.json").json
    assert {"/v1/items/{id}/similar", "/v1/search"} <= set(spec["paths"])
    for response in (keyed_app.test_client().get(f"/v1/items/{catalogue[0]['items'][0]['id']}/similar"),
                     keyed_app.test_client().post("/v1/search", json={"image_url": "http://127.0.0.1/x.jpg"})):
        assert (response.status_code, response.json["code"]) == (401, "unauthorized")
