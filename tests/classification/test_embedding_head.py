"""The retrieval embedding head: it learns label neighbourhoods that raw features miss, ignores images a
label set says nothing about, round-trips through the bundle, and names its own embedding space."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from classification.embedding_head import (MISSING, CrossSearch, EmbeddingHead, Gallery, cross_precision_at_k,
                                           embedding_version, l2_normalise, load_head, precision_at_k, train_head,
                                           tune_profile)
from classification.inference import Classifier

BUNDLE = Path(__file__).resolve().parents[2] / "models" / "fashion-lite0"


def _features_with_a_nuisance(n, classes=6, backgrounds=4, dim=48, seed=0):
    """Each row: its class's direction plus a three times stronger direction of one of a few
    backgrounds (which says nothing about the class) and noise: raw neighbours share a background."""
    rng = np.random.default_rng(seed)
    class_dirs = l2_normalise(rng.normal(size=(classes, dim)))
    background_dirs = l2_normalise(rng.normal(size=(backgrounds, dim)))
    labels = rng.integers(0, classes, n)
    background = rng.integers(0, backgrounds, n)
    features = class_dirs[labels] + 3.0 * background_dirs[background] + 0.3 * rng.normal(size=(n, dim))
    return features.astype(np.float32), labels


def test_precision_at_k_counts_labelled_neighbours_other_than_the_query():
    vectors = l2_normalise(np.array([[1, 0], [0.9, 0.1], [0.8, 0.3], [0, 1], [0.1, 0.9]], np.float32))
    labels = ["a", "a", "b", "b", None]
    precision, chance, queries, _ = precision_at_k(vectors, labels, k=1)
    # nearest other: 0->1 (a: hit), 1->0 (hit), 2->1 (a: miss), 3->4 (None: miss); row 4 has no label
    assert queries == 4 and precision == pytest.approx(2 / 4)
    assert chance == pytest.approx(np.mean([1 / 4, 1 / 4, 1 / 4, 1 / 4]))
    # the same as a direct count at k=2
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -np.inf)
    top2 = np.argsort(-scores, axis=1)[:, :2]
    direct = np.mean([np.mean([labels[j] == labels[i] for j in top2[i]]) for i in range(4)])
    at_two = precision_at_k(vectors, labels, k=2)
    assert at_two.precision == pytest.approx(direct)
    # each label has one other item: one hit at k=1 is the best possible, half of k=2
    assert precision_at_k(vectors, labels, k=1).ceiling == 1.0 and at_two.ceiling == pytest.approx(0.5)


def test_head_learns_label_neighbourhoods_the_raw_features_miss():
    features, labels = _features_with_a_nuisance(1600, seed=0)
    train_x, train_y, test_x, test_y = features[:1200], labels[:1200], features[1200:], labels[1200:]
    raw = precision_at_k(l2_normalise(test_x), list(test_y), k=10)[0]
    head, history = train_head(train_x, {"label": train_y}, dim=16, epochs=40, batch_size=64, learning_rate=1e-2)
    learned = precision_at_k(head.project(test_x), list(test_y), k=10)[0]
    assert raw < 0.55 and learned > 0.8, (raw, learned)
    assert history["loss"][-1] < history["loss"][0]
    assert head.dim == 16 and head.weight.shape == (48, 16)


def test_images_missing_from_a_label_set_count_for_nothing():
    features, labels = _features_with_a_nuisance(600, seed=1)
    unknown = np.full(600, MISSING)
    half = np.where(np.arange(600) % 2 == 0, labels, MISSING)
    head, history = train_head(features, {"label": half, "nothing": unknown}, dim=8, epochs=3)
    assert "nothing_loss" not in history and np.isfinite(head.weight).all()
    # The MISSING rows carry zero weight: whatever their features, the head comes out the same.
    scrambled = features.copy()
    scrambled[1::2] = np.random.default_rng(5).normal(scale=10.0, size=scrambled[1::2].shape)
    other, _ = train_head(scrambled, {"label": half, "nothing": unknown}, dim=8, epochs=3)
    np.testing.assert_allclose(other.weight, head.weight, atol=1e-4)
    with pytest.raises(ValueError, match="no image is labelled"):
        train_head(features, {"nothing": unknown})


def test_head_round_trips_and_names_its_space(tmp_path):
    head = EmbeddingHead(np.random.default_rng(0).normal(size=(32, 8)).astype(np.float32))
    assert load_head(tmp_path) is None
    head.save(tmp_path)
    loaded = load_head(tmp_path)
    assert loaded.dim == 8 and loaded.version == head.version
    features = np.random.default_rng(1).normal(size=(5, 32)).astype(np.float32)
    projected = loaded.project(features)
    assert projected.shape == (5, 8) and projected.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(projected, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(projected, head.project(features), atol=2e-3)  # float16 on disk
    # the scale of the features does not matter; other weights are another space
    np.testing.assert_allclose(loaded.project(features * 7.0), projected, atol=1e-5)
    assert EmbeddingHead(head.weight * 2 + 1).version != head.version


def test_a_class_profile_joins_the_embedding_and_names_another_space(tmp_path):
    head = EmbeddingHead(np.random.default_rng(0).normal(size=(32, 8)).astype(np.float32))
    profiled = head.with_profile({"articleType": 1.5, "baseColour": 0.0}, {"articleType": 4, "baseColour": 3})
    assert profiled.profile == (("articleType", 1.5, 4),) and profiled.dim == 12
    assert profiled.version != head.version
    features = np.random.default_rng(1).normal(size=(3, 32)).astype(np.float32)
    probs = {"articleType": np.array([[1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], np.float32)}
    vectors = profiled.project(features, probs)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # the projection part is the plain head's, scaled; the profile part is sqrt(p) times the weight
    scale = np.linalg.norm(vectors[:, :8], axis=1, keepdims=True)
    np.testing.assert_allclose(vectors[:, :8] / scale, head.project(features), atol=1e-5)
    np.testing.assert_allclose(vectors[:, 8:] / scale, 1.5 * np.sqrt(probs["articleType"]), atol=1e-5)
    with pytest.raises(ValueError, match="articleType probabilities"):
        profiled.project(features)
    profiled.save(tmp_path)
    loaded = load_head(tmp_path)
    assert loaded.profile == profiled.profile and loaded.version == profiled.version
    np.testing.assert_allclose(loaded.project(features, probs), vectors, atol=2e-3)


def test_a_profile_of_the_served_probabilities_is_another_space_and_names_what_serves_them(tmp_path):
    head = EmbeddingHead(np.random.default_rng(0).normal(size=(32, 8)).astype(np.float32))
    model = head.with_profile({"articleType": 1.0}, {"articleType": 4})
    served = head.with_profile({"articleType": 1.0}, {"articleType": 4}, "served")
    assert (model.profile_source, served.profile_source) == ("model", "served") and served.profile == model.profile
    # the model's own keeps the hash heads always had (served bundles keep their names); the projection
    # (the neighbour vote's space) is the same for every profile
    assert model.version == EmbeddingHead(model.weight, model.profile).version and served.version != model.version
    assert served.projection_version == model.projection_version == head.version
    served.save(tmp_path)
    assert load_head(tmp_path).profile_source == "served" and load_head(tmp_path).version == served.version
    with pytest.raises(ValueError, match="profile source"):
        EmbeddingHead(head.weight, (), "voted")
    manifest = {"name": "b", "version": "v1", "neighbour_vote": {"version": "nv"}, "feature_heads": {"version": "fh"}}
    assert embedding_version(manifest, model, False) == f"b:v1+{model.version}"
    assert embedding_version(manifest, served, False) == f"b:v1+{served.version}+vote-nv+heads-fh"
    assert embedding_version(manifest, served, False, served_as="") == f"b:v1+{served.version}"


def test_cross_precision_counts_found_items_whose_class_the_query_allows():
    gallery = l2_normalise(np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], np.float32))
    classes = np.array([0, 1, 2, -1])  # the last item has no class: never found
    queries = l2_normalise(np.array([[1, 0.05], [0, 1], [1, 1]], np.float32))
    allowed = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 0]], bool)  # the third query allows nothing: left out
    # first query: its 2 nearest are classes 0 and 1, both allowed; second: classes 2 and 1, one allowed
    assert cross_precision_at_k(queries, gallery, allowed, classes, k=2) == pytest.approx(0.75)
    assert cross_precision_at_k(queries, gallery, allowed, classes, k=1) == pytest.approx(0.5)
    assert np.isnan(cross_precision_at_k(queries, gallery, np.zeros((3, 3), bool), classes))


def test_the_profile_is_weighted_up_where_the_predictions_know_more_than_the_features():
    features, labels = _features_with_a_nuisance(800, seed=3)
    head = EmbeddingHead(np.eye(48, 16, dtype=np.float32))  # a projection that keeps mostly the nuisance
    # predictions right 90% of the time, otherwise a random class
    rng = np.random.default_rng(4)
    predicted = np.where(rng.random(800) < 0.9, labels, rng.integers(0, 6, 800))
    probs = {"articleType": np.eye(6, dtype=np.float32)[predicted] * 0.9 + 0.1 / 6}
    gallery = Gallery(features, probs, {"articleType": list(labels)})
    tuned, candidates = tune_profile(head, {"val": gallery}, {("val", "articleType"): 1.0}, ["articleType"])
    assert len(candidates) == 5 and tuned.profile and tuned.profile[0][1] > 0
    plain = precision_at_k(head.project(features), list(labels)).precision
    best = precision_at_k(tuned.project(features, probs), list(labels)).precision
    assert best > plain + 0.3 and best == pytest.approx(max(c["objective"] for c in candidates))
    # the same images as queries in a gallery of others, each allowed its own class: the same choice
    allowed = np.eye(6, dtype=bool)[labels[:400]]
    cross = CrossSearch(Gallery(features[:400], {"articleType": probs["articleType"][:400]}, {}), "gallery", allowed,
                        labels[400:])
    rest = Gallery(features[400:], {"articleType": probs["articleType"][400:]}, {"articleType": list(labels[400:])})
    crossed, cross_candidates = tune_profile(head, {"gallery": rest}, {("queries", "allowed"): 1.0}, ["articleType"],
                                             crosses={"queries": cross})
    assert crossed.profile and crossed.profile[0][1] > 0
    assert [set(c["precision"]) for c in cross_candidates] == [{"queries/allowed"}] * 5


@pytest.fixture(scope="module")
def bundle_with_a_new_head(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bundle") / "fashion-lite0"
    shutil.copytree(BUNDLE, folder, ignore=shutil.ignore_patterns("evaluation", "neighbour_vote.npz"))
    classifier = Classifier(folder)
    head = EmbeddingHead(np.random.default_rng(2).normal(size=(classifier.features_dim, 24)).astype(np.float32))
    head.save(folder)
    return folder, head


def test_classifier_embeds_through_the_bundles_head(bundle_with_a_new_head):
    folder, head = bundle_with_a_new_head
    classifier = Classifier(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    images = [np.full((90, 60, 3), (200, 30, 40), np.uint8), np.full((50, 120, 3), 90, np.uint8)]
    tags, embeddings = classifier.predict_with_embeddings(images)
    assert classifier.embedding_dim == 24 and embeddings.shape == (2, 24)
    features, probs = classifier.embedding_inputs(images)
    np.testing.assert_allclose(embeddings, load_head(folder).project(features, probs), atol=1e-5)
    assert tags == classifier.predict(images)
    # The weights, the view they serve with (the served bundle: its mirror view), then the head.
    assert classifier.embedding_version == f"{manifest['name']}:{manifest['version']}+flip+{head.version}"


def test_training_cli_writes_the_head_and_its_scores_into_the_bundle(trained_bundle, tiny_catalogue, tiny_photos,
                                                                      tiny_street, tmp_path):
    from classification import train_embedding_head

    bundle = tmp_path / "bundle"
    shutil.copytree(trained_bundle["bundle"], bundle)
    report = train_embedding_head.main([
        "--bundle", str(bundle), "--catalogue", str(tiny_catalogue), "--photos", str(tiny_photos),
        "--street", str(tiny_street), "--run-dir", str(tmp_path / "run"), "--image-cache", str(trained_bundle["run_dir"]),
        "--max-side", "96", "--dim", "8", "--epochs", "2", "--catalogue-label-sets", "gender",
        "--label-set-weight", "gender=0.5", "--write"])
    manifest = json.loads((bundle / "manifest.json").read_text())
    head = load_head(bundle)
    assert manifest["embedding"]["head"]["version"] == head.version == report["head"]
    assert set(manifest["embedding"]["head"]["label_sets"]) >= {"articleType", "baseColour", "gender", "photo_label"}
    assert manifest["embedding"]["head"]["loss_weights"] == {"baseColour": 0.5, "gender": 0.5}
    assert set(report["profile"]) <= {"articleType", "baseColour"} and head.dim == 8 + sum(
        n for _, _, n in head.profile)
    profile = manifest["embedding"]["profile"]
    assert profile["weights"] == report["profile"] and len(profile["candidates"]) == 5 * 5
    # tuned on the catalogue validation split and the training senders' photos, never on what it reports
    assert {name.split("/")[0] for name in profile["candidates"][0]["precision@10"]} == {
        "catalogue_val", "photo_train", "photo_train_in_catalogue_val"}
    assert profile["probabilities"] == "model" == head.profile_source
    for scores in (report["before (pooled features)"], report["projection alone"], report["after (head)"]):
        assert 0.0 <= scores["photo_val"]["precision@10_in_catalogue_test"] <= 1.0  # search by photo
        assert 0.0 <= scores["catalogue_test"]["precision@10_articleType"] <= 1.0
        assert 0.0 <= scores["catalogue_test"]["precision@10_gender"] <= 1.0
        assert scores["catalogue_test"]["gallery"] == len(json.loads((bundle / "split.json").read_text())["test"])
    assert Classifier(bundle).embed([np.full((80, 60, 3), 128, np.uint8)]).shape == (1, head.dim)
    # the features were cached: a second run reads them instead of running the network again
    assert any((tmp_path / "run").glob("features-*-catalogue-train-*.npz"))


def test_cached_features_are_named_by_the_weights_and_the_view_they_were_run_with(tmp_path):
    from types import SimpleNamespace

    from classification.train_embedding_head import features_path

    args = SimpleNamespace(run_dir=tmp_path)
    bundles = [SimpleNamespace(manifest={"version": "abc"}, flip_average=view) for view in (False, True, 0.8)]
    names = {features_path(args, bundle, "catalogue", "train", 9).name for bundle in bundles}
    assert names == {"features-abc-catalogue-train-9.npz", "features-abc+flip-catalogue-train-9.npz",
                     "features-abc+flip-below-0.8-catalogue-train-9.npz"}


def test_catalogue_label_sets_always_hold_type_and_colour_and_refuse_unknown_tasks():
    from types import SimpleNamespace

    from classification.train_embedding_head import catalogue_label_sets, loss_weights

    assert catalogue_label_sets("articleType,baseColour") == ["articleType", "baseColour"]
    assert catalogue_label_sets(" gender, usage,gender") == ["articleType", "baseColour", "gender", "usage"]
    with pytest.raises(SystemExit, match="unknown tasks"):
        catalogue_label_sets("gender,colour")
    args = SimpleNamespace(colour_weight=0.5, label_set_weight=["gender=0.25"])
    assert loss_weights(args) == {"baseColour": 0.5, "gender": 0.25}
    with pytest.raises(SystemExit, match="TASK=WEIGHT"):
        loss_weights(SimpleNamespace(colour_weight=0.5, label_set_weight=["gender"]))
