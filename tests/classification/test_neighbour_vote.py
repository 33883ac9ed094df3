"""The neighbour vote: the labels of the nearest training images, mixed into the served tags."""
import dataclasses
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from classification.embedding_head import EmbeddingHead, l2_normalise, load_head
from classification.feature_heads import HEADS_FILE
from common.bundles import BundleError
from classification.bundle import garments_suffix, slips_suffix
from classification.inference import Classifier
from classification.neighbour_vote import NO_LABEL, VOTE_FILE, NeighbourVote, load_vote, project, vote_rows

BUNDLE = Path(__file__).resolve().parents[2] / "models" / "fashion-lite0"


def _vote(**parameters) -> NeighbourVote:
    """Four training rows on the axes of 4-d space; 'colour' labels rows 0-2, 'kind' rows 0 and 3, row 3's
    kind a distribution over two classes."""
    labels = {"colour": np.array([0, 1, 2, NO_LABEL]), "kind": np.array([1, NO_LABEL, NO_LABEL, NO_LABEL])}
    distributions = {"kind": (np.array([3]), np.array([[0.25, 0.75]], np.float32))}
    return NeighbourVote(np.eye(4, dtype=np.float32), labels, distributions, {"colour": 3, "kind": 2}, "head",
                         **({"k": 1, "temperature": 0.05, "weight": 0.5} | parameters))


def test_a_query_on_a_training_row_gets_that_rows_label():
    vote = _vote(weight=1.0)
    probs = {"colour": np.full((1, 3), 1 / 3, np.float32), "kind": np.full((1, 2), 0.5, np.float32)}
    mixed = vote.mix(probs, np.array([[0, 1, 0, 0]], np.float32))
    np.testing.assert_allclose(mixed["colour"], [[0, 1, 0]])
    # row 1 says nothing of its kind: the model's own stays
    np.testing.assert_allclose(mixed["kind"], probs["kind"])
    # a row whose label allows several classes votes with its distribution
    np.testing.assert_allclose(vote.mix(probs, np.array([[0, 0, 0, 1]], np.float32))["kind"], [[0.25, 0.75]])


def test_added_rows_vote_like_training_rows_for_the_tasks_they_carry():
    vote = _vote(weight=1.0)
    added = vote.with_rows(l2_normalise(np.array([[0, 0, 1, 1]], np.float32)), {"kind": np.array([0])})
    assert added.row_count == 5 and added.labels["colour"][-1] == NO_LABEL  # a task left out: no label
    assert added.vectors is vote.vectors  # the bundle's rows are shared, not copied
    assert (vote.k, vote.temperature, vote.weight) == (added.k, added.temperature, added.weight)
    probs = {"colour": np.full((1, 3), 1 / 3, np.float32), "kind": np.full((1, 2), 0.5, np.float32)}
    query = l2_normalise(np.array([[0, 0, 1, 1.2]], np.float32))  # nearest the added row
    np.testing.assert_allclose(added.mix(probs, query)["kind"], [[1, 0]])
    np.testing.assert_allclose(added.mix(probs, query)["colour"], probs["colour"])  # it says nothing of colour
    np.testing.assert_allclose(vote.mix(probs, query)["kind"], [[0.25, 0.75]])  # the bundle's vote is unchanged
    with pytest.raises(ValueError, match="no such tasks"):
        vote.with_rows(np.zeros((1, 4), np.float32), {"size": np.array([0])})
    # k spans both blocks: the added row and the distribution row nearest after it both vote
    both = added.with_parameters(k=2, temperature=10.0, weight=1.0)
    query = l2_normalise(np.array([[0, 0, 0.2, 1]], np.float32))
    rows, _ = both.neighbours(query)
    assert rows.tolist() == [[3, 4]]
    np.testing.assert_allclose(both.mix(probs, query)["kind"], [[0.625, 0.375]], atol=0.01)
    again = added.with_rows(l2_normalise(np.array([[1, 1, 0, 0]], np.float32)), {"colour": np.array([2])})
    assert again.row_count == 6 and again.added.shape == (2, 4) and again.labels["kind"][-1] == NO_LABEL


def test_a_vote_with_added_rows_saves_them_all(tmp_path):
    vote = _vote().with_rows(l2_normalise(np.array([[0, 0, 1, 1]], np.float32)), {"kind": np.array([0])})
    vote.save(tmp_path)
    head = SimpleNamespace(version="head with a profile", projection_version="head")  # the vote names the projection
    loaded = load_vote(tmp_path, head)
    assert loaded.row_count == 5 and loaded.version == vote.version
    np.testing.assert_array_equal(loaded.labels["kind"], vote.labels["kind"])


def test_the_weight_mixes_model_and_neighbours_and_nearer_rows_count_more():
    probs = {"colour": np.array([[0.6, 0.3, 0.1]], np.float32), "kind": np.array([[0.5, 0.5]], np.float32)}
    query = l2_normalise(np.array([[1.0, 0.9, 0, 0]], np.float32))
    np.testing.assert_allclose(_vote(weight=0.0).mix(probs, query)["colour"], probs["colour"])
    two = _vote(k=2, weight=1.0, temperature=0.05).mix(probs, query)["colour"][0]
    cosines = query[0, :2]
    expected = np.exp((cosines - cosines[0]) / 0.05)
    np.testing.assert_allclose(two[:2], expected / expected.sum(), rtol=1e-5)
    assert two[0] > two[1] > 0 and two[2] == 0
    half = _vote(k=2, weight=0.5, temperature=0.05).mix(probs, query)["colour"][0]
    np.testing.assert_allclose(half, 0.5 * probs["colour"][0] + 0.5 * two, rtol=1e-5)
    np.testing.assert_allclose(half.sum(), 1.0, rtol=1e-5)


def test_rows_keep_one_label_or_the_models_belief_inside_what_their_label_allows():
    taxonomy = SimpleNamespace(index=lambda task, name: {"a": 0, "b": 1, "c": 2}.get(name, -1),
                               num_classes=lambda task: 3)
    records = [SimpleNamespace(allowed={"t": ("b",)}), SimpleNamespace(allowed={"t": ("a", "c", "unknown")}),
               SimpleNamespace(allowed={})]
    probs = {"t": np.array([[0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4]], np.float32)}
    labels, distributions = vote_rows(records, probs, taxonomy, ["t"])
    assert labels["t"].tolist() == [1, NO_LABEL, NO_LABEL]
    rows, values = distributions["t"]
    assert rows.tolist() == [1]
    np.testing.assert_allclose(values[0], [2 / 3, 0, 1 / 3], atol=1e-5)


def test_parameters_are_checked():
    with pytest.raises(ValueError):
        _vote(k=0)
    with pytest.raises(ValueError):
        _vote(weight=1.5)
    with pytest.raises(ValueError):
        _vote(temperature=0)


@pytest.fixture(scope="module")
def bundle_with_a_vote(tmp_path_factory):
    """A copy of the served bundle with a vote of 40 random rows in its head's space."""
    folder = tmp_path_factory.mktemp("bundle") / "fashion-lite0"
    # without the served feature heads: this compares the vote alone with what serves
    shutil.copytree(BUNDLE, folder, ignore=shutil.ignore_patterns("evaluation", VOTE_FILE, HEADS_FILE))
    # its head's class profile reading the model's own probabilities: the embeddings stay the model's
    # (a profile of the served ones: test_a_profile_of_the_served_probabilities_...)
    dataclasses.replace(load_head(folder), profile_source="model").save(folder)
    plain = Classifier(folder)
    rng = np.random.default_rng(3)
    tasks = plain.taxonomy.labels
    vote = NeighbourVote(
        vectors=l2_normalise(rng.normal(size=(40, plain.embedding_head.weight.shape[1]))).astype(np.float16),
        labels={task: rng.integers(0, len(names), 40) for task, names in tasks.items()}, distributions={},
        classes={task: len(names) for task, names in tasks.items()}, head_version=plain.embedding_head.version,
        k=3, temperature=0.1, weight=0.5)
    vote.save(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["neighbour_vote"] = {"version": vote.version}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder, vote


def test_the_classifier_serves_the_bundles_vote_and_names_it(bundle_with_a_vote):
    folder, vote = bundle_with_a_vote
    voted, plain = Classifier(folder), Classifier(folder, neighbour_vote=False)
    assert load_vote(folder, voted.embedding_head).version == vote.version
    images = [np.full((90, 60, 3), (200, 30, 40), np.uint8), np.full((50, 120, 3), 90, np.uint8)]
    features, probs = plain.embedding_inputs(images)
    expected = vote.mix(probs, project(plain.embedding_head, features))
    served = voted.predict_proba(images)
    for task in probs:
        np.testing.assert_allclose(served[task], expected[task], atol=1e-5)
        assert not np.allclose(served[task], probs[task])
    tags, embeddings = voted.predict_with_embeddings(images)
    assert tags == voted.describe(expected) == voted.predict(images)
    # embeddings stay the model's own: the vote changes tags, not the embedding space
    np.testing.assert_allclose(embeddings, plain.embed(images), atol=1e-5)
    assert voted.embedding_version == plain.embedding_version
    # (the category's also names the slip paths it shows, after the rest: classification.bundle.slips_suffix)
    assert all(v.split("/")[0].removesuffix(slips_suffix(voted.taxonomy)).endswith(f"+vote-{vote.version}")
               for v in voted.versions.values())
    assert not any("+vote" in v for v in plain.versions.values())


def test_a_vote_built_on_another_head_or_not_the_manifests_is_refused(bundle_with_a_vote, tmp_path):
    folder, vote = bundle_with_a_vote
    other = tmp_path / "bundle"
    shutil.copytree(folder, other)
    EmbeddingHead(np.ones((1280, 8), np.float32)).save(other)
    with pytest.raises(BundleError, match="rebuild"):
        Classifier(other)
    replaced = tmp_path / "replaced"
    shutil.copytree(folder, replaced)
    vote.with_parameters(k=4, temperature=0.1, weight=0.5).save(replaced)
    with pytest.raises(BundleError, match="does not match the manifest"):
        Classifier(replaced)
    assert Classifier(replaced, neighbour_vote=False).neighbour_vote is None


def test_a_profile_of_the_served_probabilities_reads_the_bundles_vote_never_added_rows(bundle_with_a_vote, tmp_path):
    folder, vote = bundle_with_a_vote
    plain = Classifier(folder, neighbour_vote=False)
    head = plain.embedding_head.with_profile({"articleType": 1.0}, {"articleType": plain.taxonomy.num_classes("articleType")},
                                             "served")
    bundle = tmp_path / "bundle"
    shutil.copytree(folder, bundle)
    head.save(bundle)
    # the vote's rows live in the projection: tied to it, a new profile leaves the vote as it is
    tied = dataclasses.replace(vote, head_version=head.projection_version)
    tied.save(bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    (bundle / "manifest.json").write_text(json.dumps(manifest | {"neighbour_vote": {"version": tied.version}}))
    classifier = Classifier(bundle)
    images = [np.full((90, 60, 3), (200, 30, 40), np.uint8), np.full((50, 120, 3), 90, np.uint8)]
    features, probs = plain.embedding_inputs(images)
    expected = head.project(features, tied.mix(probs, project(head, features)))
    assert not np.allclose(expected, head.project(features, probs), atol=1e-3)
    tags, embeddings = classifier.predict_with_embeddings(images)
    np.testing.assert_allclose(embeddings, expected, atol=1e-5)
    garments = garments_suffix(classifier.garment_input_size, classifier.input_size)  # the bundle reads garments larger
    assert classifier.embedding_version.endswith(f"+{head.version}{garments}+vote-{tied.version}")
    # a garment's profile reads its category as the tags do: within its detector class's paths (hard:
    # nothing outside; soft: the rest scaled), the projection part as it was
    served = tied.mix(probs, project(head, features))
    shoes = [path for path in plain.taxonomy.paths if path[0] == "Footwear"]
    articles = {plain.taxonomy.index("articleType", path[2]) for path in shoes}
    outside = np.array([i not in articles for i in range(plain.taxonomy.num_classes("articleType"))])
    for weight in (0.0, 0.1):
        constrained = classifier.constrained(served, [shoes, None], weight)
        expected_row = served["articleType"][0] * np.where(outside, weight, 1.0)
        np.testing.assert_allclose(constrained["articleType"][0], expected_row / expected_row.sum(), rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(constrained["articleType"][1], served["articleType"][1])  # None: as it was
        garment = classifier.embed(images, [shoes, None], weight)
        np.testing.assert_allclose(garment, head.project(features, constrained), atol=1e-5)
    np.testing.assert_allclose(garment[1], expected[1], atol=1e-5)
    hard = classifier.embed(images, [shoes, shoes])[:, head.weight.shape[1]:]
    assert np.all(hard[:, outside] == 0)
    # rows from people's labels change the tags, never the embedding
    classifier.vote_source = lambda: tied.with_parameters(k=1, temperature=0.1, weight=1.0)
    relabelled, again = classifier.predict_with_embeddings(images)
    np.testing.assert_allclose(again, expected, atol=1e-5)
    np.testing.assert_allclose(classifier.embed(images, [shoes, None]), head.project(
        features, classifier.constrained(served, [shoes, None])), atol=1e-5)
    assert not np.allclose(classifier.voted(features, probs)["articleType"], tied.mix(probs, project(head, features))["articleType"])


def test_the_build_cli_writes_a_vote_chosen_on_the_catalogue_validation_split(trained_bundle, tiny_catalogue,
                                                                             tiny_photos, tiny_street, tmp_path):
    from classification import build_neighbour_vote, train_embedding_head

    bundle, run = tmp_path / "bundle", tmp_path / "run"
    shutil.copytree(trained_bundle["bundle"], bundle)
    data = ["--bundle", str(bundle), "--catalogue", str(tiny_catalogue), "--photos", str(tiny_photos),
            "--street", str(tiny_street), "--run-dir", str(run), "--image-cache", str(trained_bundle["run_dir"]),
            "--max-side", "96"]
    train_embedding_head.main([*data, "--dim", "8", "--epochs", "2", "--write"])
    report = build_neighbour_vote.main([*data, "--write"])
    manifest = json.loads((bundle / "manifest.json").read_text())
    split = json.loads((bundle / "split.json").read_text())
    classifier = Classifier(bundle)
    vote = classifier.neighbour_vote
    assert vote.version == report["version"] == manifest["neighbour_vote"]["version"]
    # its rows are the training images of the three kinds, nothing held out
    assert report["rows"]["catalogue/train"] == len(split["train"]) and len(vote.vectors) == sum(report["rows"].values())
    best = max(report["candidates"], key=lambda c: c["catalogue_val_sum"])
    assert report["parameters"] == {"k": best["k"], "temperature": best["temperature"], "weight": best["weight"]}
    assert set(report["after (with the vote)"]) == {"catalogue/val", "catalogue/test", "photo/val", "street/val"}
    assert classifier.predict([np.full((80, 60, 3), 128, np.uint8)])[0]["articleType"]["label"]
    # the validation thumbnails as rows too, once they have chosen: the same parameters, scored without them
    with_val = build_neighbour_vote.main([*data, "--rows-with-validation"])
    assert with_val["rows"] == report["rows"] | {"catalogue/val": len(split["val"])}
    assert with_val["parameters"] == report["parameters"] and with_val["version"] != report["version"]
    assert set(with_val["after (with the vote)"]) == {"catalogue/test", "photo/val", "street/val"}
    assert Classifier(bundle).neighbour_vote.version == report["version"]  # not written
    # a class profile of the served probabilities, chosen again on the kept projection: the vote stays
    projection = load_head(bundle)
    with pytest.raises(SystemExit, match="--keep-projection"):
        train_embedding_head.main([*data, "--profile-probabilities", "served"])
    served = train_embedding_head.main([*data, "--keep-projection", "--profile-probabilities", "served", "--write"])
    kept, manifest = load_head(bundle), json.loads((bundle / "manifest.json").read_text())
    assert kept.profile_source == "served" == served["profile_probabilities"] == manifest["embedding"]["profile"]["probabilities"]
    np.testing.assert_array_equal(kept.weight, projection.weight)
    assert manifest["embedding"]["projection_command"].endswith("--epochs 2 --write")
    assert manifest["neighbour_vote"]["version"] == report["version"] == Classifier(bundle).neighbour_vote.version
    if kept.profile:
        assert Classifier(bundle).embedding_version.endswith(f"+{kept.version}+vote-{report['version']}")
    # a new head makes the vote's rows meaningless: writing it removes the vote, and the bundle still loads
    train_embedding_head.main([*data, "--dim", "8", "--epochs", "1", "--write"])
    assert not (bundle / VOTE_FILE).exists() and "neighbour_vote" not in json.loads((bundle / "manifest.json").read_text())
    assert Classifier(bundle).neighbour_vote is None
