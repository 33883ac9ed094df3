"""People's labels for items (PUT/DELETE /v1/items/<id>/labels): checked against the taxonomy, shown as
the item's tags everywhere, withdrawn back to the model's, carried to new analyses of the image, kept
through migrations, and added to each worker's neighbour vote."""
import io
import time

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from app import db
from app.embeddings import from_bytes
from app.errors import ApiError
from app.labels import carry_labels, complete_labels
from app.models import Item, ItemEmbedding, ItemLabels
from classification.neighbour_vote import NO_LABEL

from .servers import garment_photo


def upload(client, photo: bytes, **form):
    response = client.post("/v1/analyses", data={"image": (io.BytesIO(photo), "p.jpg"), **form},
                           content_type="multipart/form-data")
    assert response.status_code in (200, 201), response.json
    return response.json


def decoded(photo: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(photo)).convert("RGB"))


@pytest.fixture
def taxonomy(pipeline):
    return pipeline.classifier.taxonomy


def test_labels_are_checked_and_their_parent_levels_implied(taxonomy):
    assert complete_labels(taxonomy, {"articleType": "Flats", "gender": "Women"}) == {
        "gender": "Women", "masterCategory": "Footwear", "subCategory": "Shoes", "articleType": "Flats"}
    # A level names no level under it; a label under two parents implies the one training images take most.
    assert complete_labels(taxonomy, {"subCategory": "Shoes"}) == {"masterCategory": "Footwear", "subCategory": "Shoes"}
    assert "masterCategory" not in complete_labels(taxonomy, {"articleType": "Tshirts"})
    counts = {("Apparel", "Topwear", "Tshirts"): 5191, ("Accessories", "Belts", "Tshirts"): 0}
    assert complete_labels(taxonomy, {"articleType": "Tshirts"}, counts)["subCategory"] == "Topwear"
    for given, code in [({"articleType": "Sandals of gold"}, "unknown_label"), ({"colour": "Red"}, "invalid_request"),
                        ({}, "invalid_request"), (["Flats"], "invalid_request"), ({"gender": 3}, "invalid_request"),
                        ({"masterCategory": "Apparel", "articleType": "Flats"}, "inconsistent_labels")]:
        with pytest.raises(ApiError) as raised:
            complete_labels(taxonomy, given)
        assert raised.value.code == code, given


def test_a_label_becomes_the_tag_everywhere_and_withdrawing_restores_the_model(client):
    analysis = upload(client, garment_photo((200, 30, 40), seed=0))
    item = analysis["items"][0]
    model_type = item["category"]["articleType"]
    response = client.put(f"/v1/items/{item['id']}/labels", json={"articleType": "Flats", "baseColour": "Olive"})
    assert response.status_code == 200, response.json
    labelled = response.json
    assert labelled["category"]["articleType"]["label"] == "Flats" and labelled["category"]["articleType"]["confidence"] == 1.0
    assert labelled["category"]["subCategory"]["label"] == "Shoes" and labelled["style"]["baseColour"]["label"] == "Olive"
    assert labelled["category"]["articleType"]["top3"] == model_type["top3"]  # the model's view stays visible
    assert labelled["labels"]["tags"] == {"masterCategory": "Footwear", "subCategory": "Shoes", "articleType": "Flats",
                                          "baseColour": "Olive"}
    assert labelled["labels"]["model"]["articleType"] == {"label": model_type["label"], "confidence": model_type["confidence"]}
    # Listings, filters and the analysis read the label.
    found = client.get("/v1/items", query_string={"articleType": "Flats", "colour": "olive"}).json["items"]
    assert [i["id"] for i in found] == [item["id"]]
    assert client.get(f"/v1/analyses/{analysis['id']}").json["items"][0]["labels"]["tags"]["articleType"] == "Flats"
    # A new set replaces the old one entirely: baseColour is the model's again.
    again = client.put(f"/v1/items/{item['id']}/labels", json={"gender": "Girls"}).json
    assert again["style"]["baseColour"] == item["style"]["baseColour"]
    assert again["category"]["articleType"] == model_type and again["category"]["gender"]["label"] == "Girls"

    withdrawn = client.delete(f"/v1/items/{item['id']}/labels")
    assert withdrawn.status_code == 200 and withdrawn.json["labels"] is None
    assert {k: withdrawn.json[k] for k in ("category", "style")} == {k: item[k] for k in ("category", "style")}
    for response in (client.delete(f"/v1/items/{item['id']}/labels"), client.put("/v1/items/999999/labels", json={"gender": "Men"})):
        assert (response.status_code, response.json["code"]) == (404, "not_found")
    refused = client.put(f"/v1/items/{item['id']}/labels", json={"articleType": "Gold shoes"})
    assert (refused.status_code, refused.json["code"], refused.json["task"]) == (422, "unknown_label", "articleType")
    # Eyewear holds Sunglasses only: the model's articleType under a person's Eyewear would be no path.
    if item["category"]["articleType"]["label"] != "Sunglasses":
        partial = client.put(f"/v1/items/{item['id']}/labels", json={"subCategory": "Eyewear"})
        assert (partial.status_code, partial.json["code"]) == (422, "inconsistent_labels")
    assert client.get(f"/v1/analyses/{analysis['id']}").json["items"][0] == item  # nothing half-written


def test_labels_follow_the_image_into_a_refreshed_analysis(client):
    photo = garment_photo((30, 120, 60), seed=3)
    first = upload(client, photo)
    labelled = client.put(f"/v1/items/{first['items'][0]['id']}/labels",
                          json={"articleType": "Jackets", "season": "Winter"}).json
    time.sleep(1.1)  # the stamps are to the second: a carried label must keep its own, not the refresh's
    refreshed = upload(client, photo, refresh="true")
    assert refreshed["id"] != first["id"]
    product = refreshed["items"][0]
    assert product["labels"]["tags"]["articleType"] == "Jackets" and product["style"]["season"]["label"] == "Winter"
    assert product["labels"]["model"]["season"]["label"] == first["items"][0]["style"]["season"]["label"]
    assert client.get(f"/v1/analyses/{first['id']}").status_code == 404  # replaced, and its labels with it
    assert product["labels"]["updated_at"] == labelled["labels"]["updated_at"]  # when the person labelled it


def test_garment_labels_carry_to_the_new_garment_whose_box_overlaps_most():
    def item(kind, box, labels=None):
        row = Item(kind=kind, box=box, gender="Men", gender_confidence=0.9, master_category="Apparel",
                   master_category_confidence=0.9, sub_category="Topwear", sub_category_confidence=0.9,
                   article_type="Tshirts", article_type_confidence=0.9, base_colour="Red", base_colour_confidence=0.9,
                   season="Summer", season_confidence=0.9, usage="Casual", usage_confidence=0.9)
        return (row, ItemLabels(labels=labels, model_tags={}, revision=1, api_key_id=None)) if labels else row

    old = [item("product", None, {"gender": "Women"}), item("garment", [10, 10, 110, 210], {"articleType": "Shirts"})]
    new = [item("product", None), item("garment", [200, 10, 300, 210]), item("garment", [20, 20, 115, 215])]
    carry_labels(old, new)
    assert new[0].gender == "Women" and new[0].person_labels.labels == {"gender": "Women"}
    assert new[1].person_labels is None and new[1].article_type == "Tshirts"  # no overlap
    assert new[2].article_type == "Shirts" and new[2].article_type_confidence == 1.0  # IoU 0.80
    assert new[2].person_labels.model_tags == {"articleType": {"label": "Tshirts", "confidence": 0.9}}


@pytest.fixture
def label_votes(app, pipeline):
    """This app's label votes on the shared pipeline, synced before every classifier call."""
    votes = app.extensions["label_votes"]
    votes.sync_seconds, votes.REREAD_SHARE = 0, 0  # a check due at every classifier call
    votes.attach(pipeline)
    yield votes
    votes.wait()  # no check left running on this test's database
    pipeline.classifier.vote_source = None


def test_labelled_items_join_the_neighbour_vote_of_the_worker(app, client, pipeline, label_votes):
    classifier = pipeline.classifier
    bundle_rows = len(classifier.neighbour_vote.vectors)
    flats = classifier.taxonomy.index("articleType", "Flats")
    labelled_photo, near_photo = garment_photo((200, 30, 40), seed=0), garment_photo((205, 35, 45), seed=7)
    unrelated = np.random.default_rng(0).integers(0, 255, (300, 240, 3), dtype=np.uint8)

    def p_flats():
        probs = classifier.predict_proba([decoded(near_photo), unrelated])["articleType"]
        return probs[:, flats]

    before = p_flats()
    item = upload(client, labelled_photo)["items"][0]
    label_votes.refresh()
    assert label_votes.vote() is classifier.neighbour_vote and label_votes.rows == 0  # nothing labelled yet
    client.put(f"/v1/items/{item['id']}/labels", json={"articleType": "Flats", "gender": "Women"})

    assert label_votes.refresh() and not label_votes.refresh()  # read once, then nothing changed
    vote = label_votes.vote()
    assert label_votes.rows == 1 and vote.row_count == bundle_rows + 1
    assert vote.vectors is classifier.neighbour_vote.vectors  # the bundle's rows shared, not copied
    with app.app_context():
        stored = from_bytes(db.session().scalar(select(ItemEmbedding.vector).where(ItemEmbedding.item_id == item["id"])))
    row = stored[:vote.vectors.shape[1]] / np.linalg.norm(stored[:vote.vectors.shape[1]])
    np.testing.assert_allclose(vote.added[-1], row, atol=1e-6)
    assert vote.labels["articleType"][-1] == flats
    assert vote.labels["subCategory"][-1] == classifier.taxonomy.index("subCategory", "Shoes")
    assert vote.labels["usage"][-1] == NO_LABEL  # a task the person said nothing of does not vote
    after = p_flats()
    assert after[0] > before[0] + 0.1  # a near copy of the labelled photo leans to the person's label
    assert abs(after[1] - before[1]) < 1e-3  # an unrelated image is tagged as before

    client.delete(f"/v1/items/{item['id']}/labels")
    label_votes.wait()
    label_votes.refresh()
    assert label_votes.vote() is classifier.neighbour_vote and label_votes.rows == 0
    np.testing.assert_allclose(p_flats(), before, atol=1e-6)


def test_the_vote_rows_follow_deletes_and_survive_a_database_outage(app, client, pipeline, label_votes):
    item = upload(client, garment_photo((20, 20, 200), seed=5))
    client.put(f"/v1/items/{item['items'][0]['id']}/labels", json={"usage": "Formal"})
    label_votes.refresh()
    assert label_votes.rows == 1

    def outage():
        raise ConnectionError("database gone")

    label_votes.wait()
    sessionmaker = label_votes.sessionmaker
    label_votes.sessionmaker = outage
    try:
        with pytest.raises(ConnectionError):
            label_votes.refresh()
        kept = label_votes.vote()  # the worker tags on with the rows it has (its background check fails)
        assert kept.row_count == len(pipeline.classifier.neighbour_vote.vectors) + 1
        assert client.post("/v1/analyses", data={"image": (io.BytesIO(garment_photo((1, 2, 3))), "p.jpg")},
                           content_type="multipart/form-data").status_code == 201
        label_votes.wait()
    finally:
        label_votes.sessionmaker = sessionmaker
    assert label_votes.rows == 1
    assert client.delete(f"/v1/images/{item['image']['id']}").status_code == 200
    label_votes.wait()
    label_votes.refresh()
    assert label_votes.rows == 0


def test_a_due_check_runs_in_the_background_and_requests_never_wait_for_it(client, label_votes):
    item = upload(client, garment_photo((90, 90, 20), seed=9))["items"][0]
    label_votes.wait()
    client.put(f"/v1/items/{item['id']}/labels", json={"season": "Winter"})
    served = label_votes.vote()  # due (sync 0 s): starts the check, answers with the vote it has
    label_votes.wait()
    assert label_votes.rows == 1 and label_votes.vote() is not served
    label_votes.wait()
    label_votes.sync_seconds = 3600
    label_votes.vote()  # a check now, and the next one an hour away
    label_votes.wait()
    client.delete(f"/v1/items/{item['id']}/labels")
    label_votes.vote()
    label_votes.wait()
    assert label_votes.rows == 1  # not checked again yet: no query on the request path
    assert label_votes.refresh() and label_votes.rows == 0


def test_models_report_the_workers_labelled_rows(client, label_votes):
    label_votes.refresh()
    assert client.get("/v1/models").json["labelled_vote_rows"] == 0


def test_labelled_filter_lists_reviewed_items_and_the_review_queue(client):
    first = upload(client, garment_photo((200, 30, 40), seed=0))["items"][0]["id"]
    second = upload(client, garment_photo((30, 60, 200), seed=1))["items"][0]["id"]
    client.put(f"/v1/items/{first}/labels", json={"usage": "Travel"})

    def listed(**query):
        response = client.get("/v1/items", query_string={"kind": "product", **query})
        assert response.status_code == 200, response.json
        return [i["id"] for i in response.json["items"]]

    assert listed(labelled="true") == [first] and listed(labelled="false") == [second]
    assert listed(labelled="true", usage="Travel") == [first] and first not in listed(labelled="false", usage="Travel")
    assert client.get("/v1/items", query_string={"labelled": "maybe"}).json["code"] == "invalid_request"
    similar = client.get(f"/v1/items/{second}/similar", query_string={"labelled": "true"}).json
    assert [hit["item"]["id"] for hit in similar["results"]] == [first]
    grid = client.get("/catalogue", query_string={"labelled": "false", "kind": "product"}).get_data(as_text=True)
    assert f'data-item-id="{second}"' in grid and f'data-item-id="{first}"' not in grid
    assert '<option value="false" selected>not yet</option>' in grid
