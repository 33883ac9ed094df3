import json
from pathlib import Path
from types import SimpleNamespace

from app.models_api import classifier_json, per_label_figures

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
    assert classifier["garment_input_size"] == manifest["inference"]["garment_input_size"] == [192, 144]
    held_out = classifier["held_out"]
    assert held_out["street"]["articleType_group_accuracy"] == manifest["metrics"]["street"]["articleType_group_accuracy"]
    low, high = held_out["intervals_95"]["catalogue"]["articleType"]
    assert low <= held_out["catalogue"]["articleType"] <= high
    assert "report" not in held_out  # a path inside the bundle, of no use to a caller
    # which min_confidence to filter at: how often a catalogue articleType at least 0.9 sure is right
    share, accuracy = held_out["confidence"]["catalogue"]["articleType"]["min_confidence"]["0.9"]
    assert 0 < share < 1 and held_out["catalogue"]["articleType"] < accuracy <= 1
    assert set(held_out["confidence"]["street"]) == {"articleType", "masterCategory"}
    # the committed bundle serves as it was measured (its mirror view and its neighbour vote)
    assert held_out["as_served"] is True and classifier["neighbour_vote"] == manifest["neighbour_vote"]["version"]
    # which tasks the feature heads mix into, as the fit chose them; the category levels only for thumbnails
    assert classifier["feature_heads"] == manifest["feature_heads"]["version"]
    # the second network for thumbnails, as the bundle names it
    assert classifier["thumbnail_specialist"]["version"] == manifest["thumbnail_specialist"]["version"]
    assert classifier["thumbnail_specialist"]["min_gate"] == manifest["thumbnail_specialist"]["min_gate"]
    assert classifier["feature_head_tasks"] == {
        task: {"weight": chosen["weight"], "gated": chosen["gated"]}
        for task, chosen in manifest["feature_heads"]["tasks"].items() if chosen["weight"] > 0}
    assert classifier["feature_head_tasks"]["articleType"]["gated"] is True
    assert classifier["feature_head_tasks"]["gender"]["gated"] is False
    # the kinds whose own labels are read into articleType (gated to images of that kind), as the fit chose them
    assert classifier["source_label_heads"] == {
        kind: {"weight": chosen["weight"], "labels": chosen["labels"]}
        for kind, chosen in manifest["feature_heads"].get("label_heads", {}).items()
        if kind in ("photo", "street") and chosen["weight"] > 0}
    # the embedding space, and its class profile as the head's training chose it
    assert classifier["embedding"] == {"version": pipeline.embedding_model, "dim": pipeline.classifier.embedding_dim,
                                       "profile": manifest["embedding"]["profile"]["weights"],
                                       "profile_probabilities": manifest["embedding"]["profile"]["probabilities"]}

    detector = body["detector"]
    assert detector["version"] == pipeline.bundles["detector"] and "top" in detector["classes"]
    # what the arithmetic resolved to on this machine, and named in the version analyses record
    assert detector["compute_dtype"] == pipeline.detector.compute_dtype in ("float32", "bfloat16")
    assert detector["version"].endswith("+bfloat16") == (detector["compute_dtype"] == "bfloat16")
    assert 0 < detector["held_out"]["box_AP50"] <= 1 and "box_AP_per_category" not in detector["held_out"]
    assert body["garment_crop"] == pipeline.garment_crop
    assert body["garment_context"] == "log:0.35/catalogue+photo" == pipeline.bundles["garment_context"]
    assert body["garment_fragments"] == "0.8/catalogue+photo" == pipeline.bundles["garment_fragments"]
    assert body["product_garment"] == "log:0.35/photo" == pipeline.bundles["product_garment"]


def test_figures_measured_another_way_than_the_classifier_serves_are_flagged():
    classifier = SimpleNamespace(
        manifest={"name": "c", "version": "v", "model": {"trunk": "t", "input_size": [160, 120]}, "metrics": {"catalogue": {"gender": 0.9}},
                  "inference": {"flip_average": True, "neighbour_vote": "abc"}},
        versions={"category": "c:v/category"}, input_size=(160, 120), garment_input_size=(160, 120),
        flip_average=True, embedding_dim=8,
        embedding_head=None, neighbour_vote=None, feature_heads=None,  # served with CLASSIFIER_NEIGHBOUR_VOTE=0
        specialist=None, specialist_settings=None)
    card = classifier_json(SimpleNamespace(classifier=classifier, embedding_model="c:v+head"))
    assert card["held_out"]["as_served"] is False and card["neighbour_vote"] is None
    classifier.neighbour_vote = SimpleNamespace(version="abc")
    assert classifier_json(SimpleNamespace(classifier=classifier, embedding_model="e"))["held_out"]["as_served"] is True
    assert card["feature_head_tasks"] is None and card["source_label_heads"] is None
    assert card["embedding"] == {"version": "c:v+head", "dim": 8, "profile": {}, "profile_probabilities": None}
    classifier.garment_input_size = (192, 144)  # GARMENT_INPUT_SIZE other than the street crops were read at
    assert classifier_json(SimpleNamespace(classifier=classifier, embedding_model="e"))["held_out"]["as_served"] is False
    classifier.manifest["inference"]["garment_input_size"] = [192, 144]
    assert classifier_json(SimpleNamespace(classifier=classifier, embedding_model="e"))["held_out"]["as_served"] is True
    classifier.feature_heads = SimpleNamespace(version="def", heads=(  # heads the evaluation did not serve with
        SimpleNamespace(task="gender", weight=0.5, gated=False),), label_heads=(
        SimpleNamespace(kind="photo", weight=0.35, labels=("Pants", "Shirt")),))
    card = classifier_json(SimpleNamespace(classifier=classifier, embedding_model="e"))
    assert card["held_out"]["as_served"] is False and card["feature_heads"] == "def"
    assert card["feature_head_tasks"] == {"gender": {"weight": 0.5, "gated": False}}
    assert card["source_label_heads"] == {"photo": {"weight": 0.35, "labels": 2}}
    assert card["thumbnail_specialist"] is None
    classifier.manifest["inference"]["feature_heads"] = "def"
    classifier.specialist = SimpleNamespace(manifest={"version": "w"})  # a specialist the evaluation did not serve with
    classifier.specialist_settings = SimpleNamespace(version="thumbs1", weight=1.0, min_gate=0.5)
    card = classifier_json(SimpleNamespace(classifier=classifier, embedding_model="e"))
    assert card["held_out"]["as_served"] is False
    assert card["thumbnail_specialist"] == {"version": "thumbs1", "weight": 1.0, "min_gate": 0.5, "weights": "w"}
    classifier.manifest["inference"]["thumbnail_specialist"] = "thumbs1"
    assert classifier_json(SimpleNamespace(classifier=classifier, embedding_model="e"))["held_out"]["as_served"] is True


def test_models_need_a_key_when_keys_are_on_and_are_in_the_openapi_document(keyed_app, client):
    assert "/v1/models" in client.get("/openapi.json").json["paths"]
    response = keyed_app.test_client().get("/v1/models")
    assert (response.status_code, response.json["code"]) == (401, "unauthorized")


def test_per_label_figures_say_which_tags_to_trust(client, pipeline):
    assert "per_label" not in client.get("/v1/models").json["classifier"]["held_out"]
    per_label = client.get("/v1/models?per_label=true").json["classifier"]["held_out"]["per_label"]
    evaluation = json.loads((MODELS / "fashion-lite0" / "evaluation" / "metrics.json").read_text())
    manifest = json.loads((MODELS / "fashion-lite0" / "manifest.json").read_text())
    for task, classes in per_label["catalogue"].items():
        recorded = evaluation["catalogue"]["tasks"][task]["per_class"]
        assert set(classes) == set(recorded)
        for name, figures in classes.items():
            assert figures["recall"] == round(recorded[name]["recall"], 4)
            assert figures["precision"] == (None if recorded[name]["predicted"] == 0 else round(recorded[name]["precision"], 4))
    # every test thumbnail with a label is counted once per task, and is given one tag
    articles = per_label["catalogue"]["articleType"].values()
    assert sum(c["support"] for c in articles) == sum(c["predicted"] for c in articles) == manifest["metrics"]["catalogue"]["images"]
    for kind in ("photo", "street"):
        labels = per_label[kind]
        assert sum(m["support"] for m in labels.values()) == manifest["metrics"][kind]["images"]
        assert len(labels) == manifest["metrics"][kind]["labels"]
    mean = sum(m["group_accuracy"] for m in per_label["street"].values()) / len(per_label["street"])
    assert abs(mean - manifest["metrics"]["street"]["articleType_group_accuracy"]) < 1e-3
    response = client.get("/v1/models?per_label=maybe")
    assert (response.status_code, response.json["code"]) == (400, "invalid_request")


def test_per_label_figures_only_from_the_evaluation_the_manifest_quotes(tmp_path):
    reports = {"catalogue": {"images": 3, "tasks": {"gender": {"accuracy": 2 / 3, "per_class": {
                   "Men": {"precision": 1.0, "recall": 0.5, "support": 2, "predicted": 1},
                   "Women": {"precision": 0.5, "recall": 1.0, "support": 1, "predicted": 2},
                   "Boys": {"precision": 0.0, "recall": 0.0, "support": 0, "predicted": 0}}}}},
               "photo": {"images": 2, "articleType_group_accuracy": 0.5, "per_label": {
                   "Pants": {"support": 2, "group_accuracy": 0.5, "masterCategory_accuracy": 1.0, "predicted": []}}}}
    manifest = {"metrics": {"catalogue": {"images": 3, "gender": 0.6667}, "photo": {"images": 2, "labels": 1,
                                                                                   "articleType_group_accuracy": 0.5},
                            "intervals_95": {}, "report": "evaluation/report.md"}}
    assert per_label_figures(tmp_path, manifest) is None  # no evaluation in the bundle
    (tmp_path / "evaluation").mkdir()
    (tmp_path / "evaluation" / "metrics.json").write_text(json.dumps(reports))
    figures = per_label_figures(tmp_path, manifest)
    assert figures["catalogue"]["gender"]["Men"] == {"precision": 1.0, "recall": 0.5, "support": 2, "predicted": 1}
    assert figures["catalogue"]["gender"]["Boys"]["precision"] is None  # never given, not always wrong
    assert figures["photo"] == {"Pants": {"support": 2, "group_accuracy": 0.5, "masterCategory_accuracy": 1.0}}
    # a later evaluation whose figures are not the manifest's is not passed off as its per-label figures
    stale = {**manifest, "metrics": {**manifest["metrics"], "catalogue": {"images": 3, "gender": 0.9}}}
    assert per_label_figures(tmp_path, stale) is None
