import json
from pathlib import Path
from types import SimpleNamespace

from app import create_app
from app.models_api import classifier_json

from .test_api import post_url

MODELS = Path(__file__).resolve().parents[2] / "models"


def test_models_say_what_tags_the_images_and_how_well_it_scored(client, pipeline, image_server):
    response = client.get("/v1/models")
    assert response.status_code == 200
    body = response.json
    # The versions every analysis records: a caller can tell which stored tags the serving models made.
    analysis = post_url(client, image_server.url("/shirt.jpg")).json
    assert body["bundles"] == analysis["bundles"] == pipeline.bundles

    classifier = body["classifier"]
    manifest = json.loads((MODELS / "fashion-lite0" / "manifest.json").read_text())
    assert (classifier["name"], classifier["version"]) == ("fashion-lite0", manifest["version"])
    assert classifier["served_as"] == pipeline.bundles["classifier"]
    assert classifier["input_size"] == manifest["model"]["input_size"]
    held_out = classifier["held_out"]
    assert held_out["street"]["articleType_group_accuracy"] == manifest["metrics"]["street"]["articleType_group_accuracy"]
    low, high = held_out["intervals_95"]["catalogue"]["articleType"]
    assert low <= held_out["catalogue"]["articleType"] <= high
    assert "report" not in held_out  # a path inside the bundle, of no use to a caller
    # the committed bundle serves as it was measured (its mirror view and its neighbour vote)
    assert held_out["as_served"] is True and classifier["neighbour_vote"] == manifest["neighbour_vote"]["version"]
    assert classifier["embedding"] == {"version": pipeline.embedding_model, "dim": pipeline.classifier.embedding_dim}

    detector = body["detector"]
    assert detector["version"] == pipeline.bundles["detector"] and "top" in detector["classes"]
    assert 0 < detector["held_out"]["box_AP50"] <= 1 and "box_AP_per_category" not in detector["held_out"]
    assert body["garment_crop"] == pipeline.garment_crop


def test_figures_measured_another_way_than_the_classifier_serves_are_flagged():
    classifier = SimpleNamespace(
        manifest={"name": "c", "version": "v", "model": {"trunk": "t"}, "metrics": {"catalogue": {"gender": 0.9}},
                  "inference": {"flip_average": True, "neighbour_vote": "abc"}},
        versions={"category": "c:v/category"}, input_size=(160, 120), flip_average=True, embedding_dim=8,
        neighbour_vote=None)  # served with CLASSIFIER_NEIGHBOUR_VOTE=0
    card = classifier_json(SimpleNamespace(classifier=classifier, embedding_model="c:v+head"))
    assert card["held_out"]["as_served"] is False and card["neighbour_vote"] is None
    classifier.neighbour_vote = SimpleNamespace(version="abc")
    assert classifier_json(SimpleNamespace(classifier=classifier, embedding_model="e"))["held_out"]["as_served"] is True


def test_models_need_a_key_when_keys_are_on_and_are_in_the_openapi_document(settings, pipeline, client):
    assert "/v1/models" in client.get("/openapi.json").json["paths"]
    locked = create_app(settings.replace(api_keys_required=True))
    locked.extensions["pipeline"].set(pipeline)
    response = locked.test_client().get("/v1/models")
    assert (response.status_code, response.json["code"]) == (401, "unauthorized")
    locked.extensions["engine"].dispose()
