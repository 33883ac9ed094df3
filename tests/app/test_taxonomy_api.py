"""GET /v1/taxonomy: the tags the serving classifier can give, as the rest of the API takes them."""
from types import SimpleNamespace

import numpy as np

from app.taxonomy_api import taxonomy_json
from classification.detector_prior import DetectorPrior
from classification.neighbour_vote import NO_LABEL
from classification.taxonomy import HIERARCHY_LEVELS, TASKS

from .servers import garment_photo
from .test_labels import upload


def test_the_taxonomy_is_the_serving_classifiers(client, pipeline):
    body = client.get("/v1/taxonomy").json
    taxonomy = pipeline.classifier.taxonomy
    tasks = {task: labels for group in body["tasks"].values() for task, labels in group.items()}
    assert set(tasks) == set(TASKS) and all(tasks[task] == list(taxonomy.labels[task]) for task in TASKS)
    assert body["classifier"] == pipeline.classifier.versions
    paths = [tuple(path[level] for level in HIERARCHY_LEVELS) for path in body["paths"]]
    assert paths == [tuple(path) for path in taxonomy.paths]
    # training images per path: the vote's rows labelled at all three levels, counted here from its arrays
    vote = pipeline.classifier.neighbour_vote
    levels = np.stack([vote.labels[level] for level in HIERARCHY_LEVELS], axis=1)
    assert sum(path["training_images"] for path in body["paths"]) == int((levels != NO_LABEL).all(axis=1).sum())
    tshirts = max((p for p in body["paths"] if p["articleType"] == "Tshirts"), key=lambda p: p["training_images"])
    assert (tshirts["masterCategory"], tshirts["subCategory"]) == ("Apparel", "Topwear")
    shown_as = {tuple(path[level] for level in HIERARCHY_LEVELS): tuple(path["shown_as"][level] for level in HIERARCHY_LEVELS)
                for path in body["paths"] if "shown_as" in path}
    assert shown_as == {taxonomy.paths[slip]: taxonomy.paths[shown] for slip, shown in taxonomy.slips.items()}
    assert shown_as[("Apparel", "Topwear", "Dresses")] == ("Apparel", "Dress", "Dresses")  # the served bundle's


def test_garment_classes_allow_listed_article_types_only_while_the_prior_is_on(client, pipeline):
    classes = client.get("/v1/taxonomy").json["garment_classes"]
    assert pipeline.prior.mode != "off" and set(classes) == set(pipeline.prior.allowed)
    article_types = set(pipeline.classifier.taxonomy.labels["articleType"])
    assert "Tshirts" in classes["top"] and "Jeans" in classes["trousers"] and "Jeans" not in classes["top"]
    assert all(allowed is None or set(allowed) <= article_types for allowed in classes.values())
    off = SimpleNamespace(classifier=pipeline.classifier, prior=DetectorPrior())
    assert taxonomy_json(off)["garment_classes"] is None


def test_every_listed_path_is_a_label_the_api_takes(client):
    body = client.get("/v1/taxonomy").json
    item = upload(client, garment_photo((120, 40, 160), seed=11))["items"][0]
    rare = min(body["paths"], key=lambda p: (p["training_images"], p["articleType"]))
    labelled = client.put(f"/v1/items/{item['id']}/labels", json={level: rare[level] for level in HIERARCHY_LEVELS})
    assert labelled.status_code == 200, labelled.json
    assert labelled.json["category"]["articleType"]["label"] == rare["articleType"]
    colour = body["tasks"]["style"]["baseColour"][-1]
    assert client.put(f"/v1/items/{item['id']}/labels", json={"baseColour": colour}).status_code == 200
    assert client.put(f"/v1/items/{item['id']}/labels", json={"baseColour": "Ultraviolet"}).json["code"] == "unknown_label"


def test_the_taxonomy_needs_a_key_when_keys_are_on_and_is_documented(keyed_app, client):
    assert "/v1/taxonomy" in client.get("/openapi.json").json["paths"]
    response = keyed_app.test_client().get("/v1/taxonomy")
    assert (response.status_code, response.json["code"]) == (401, "unauthorized")
