"""Feature heads: logistic regressions on the pooled features, mixed into the served probabilities."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from classification.feature_heads import (HEADS_FILE, FeatureHeads, SourceLabelHead, fit_gate, fit_head, label_mass,
                                          load_heads)
from classification.bundle import slips_suffix
from classification.inference import Classifier
from classification.neighbour_vote import project
from classification.taxonomy import STYLE_TASKS
from common.bundles import BundleError

BUNDLE = Path(__file__).resolve().parents[2] / "models" / "fashion-lite0"


def blobs(n: int = 300, dim: int = 16, classes: int = 3, seed: int = 0):
    """Features around one centre per class, labels 0..classes-1 (and some unknown: -1)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * 3
    labels = rng.integers(0, classes, n)
    features = (centres[labels] + rng.normal(size=(n, dim))).astype(np.float32) * 5 + 40  # unscaled on purpose
    labels[::10] = -1
    return features, labels


def test_a_fitted_head_reads_the_labels_and_never_gives_a_class_no_image_had():
    features, labels = blobs()
    head = fit_head("gender", features[:200], labels[:200], classes=5, c=1.0, weight=0.5)
    probs = head.probabilities(features[200:])
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)
    known = labels[200:] >= 0
    assert (probs.argmax(axis=1) == labels[200:])[known].mean() > 0.95
    assert probs[:, 3:].max() < 1e-6  # classes 3 and 4: no training row carried them

    two = np.where(labels == 2, 1, labels)  # two classes: sklearn keeps one row of weights
    pair = fit_head("gender", features, two, classes=5, c=1.0, weight=1.0).probabilities(features)
    assert (pair.argmax(axis=1) == two)[two >= 0].mean() > 0.95 and pair[:, 2:].max() < 1e-6


def test_the_weight_mixes_and_a_saved_head_loads_the_same(tmp_path):
    features, labels = blobs()
    head = fit_head("gender", features, labels, classes=3, c=0.1, weight=0.25)
    heads = FeatureHeads((head,))
    probs = {"gender": np.full((len(features), 3), 1 / 3, np.float32), "usage": np.eye(3, dtype=np.float32)[labels % 3]}
    mixed = heads.mix(probs, features)
    np.testing.assert_allclose(mixed["gender"], 0.75 / 3 + 0.25 * head.probabilities(features), atol=1e-6)
    assert mixed["usage"] is probs["usage"]  # a task without a head is left as it is
    heads.save(tmp_path)
    loaded = load_heads(tmp_path, heads.version)
    assert loaded.version == heads.version
    np.testing.assert_allclose(loaded.mix(probs, features)["gender"], mixed["gender"], atol=1e-6)
    with pytest.raises(BundleError, match="does not match the manifest"):
        load_heads(tmp_path, "000000000000")
    assert load_heads(tmp_path / "elsewhere") is None


def test_a_gated_head_is_mixed_in_as_far_as_the_image_looks_like_a_catalogue_thumbnail(tmp_path):
    features, labels = blobs()
    catalogue, photos = features[:150], features[150:] + 60  # the two kinds far apart in feature space
    gate = fit_gate({"catalogue": catalogue, "photo": photos}, c=1.0)
    lookalikes = gate.catalogue_probability(features[150:])  # unshifted: features like the catalogue's
    assert gate.catalogue_probability(catalogue).min() > 0.9 and gate.catalogue_probability(photos).max() < 0.1
    head = fit_head("articleType", catalogue, labels[:150], classes=3, c=1.0, weight=0.5, gated=True)
    plain = fit_head("gender", catalogue, labels[:150], classes=3, c=1.0, weight=0.5)
    heads = FeatureHeads((head, plain), gate)
    both = np.concatenate([catalogue, photos])
    flat = np.full((len(both), 3), 1 / 3, np.float32)
    mixed = heads.mix({"articleType": flat, "gender": flat}, both)
    weight = 0.5 * gate.catalogue_probability(both)[:, None]
    np.testing.assert_allclose(mixed["articleType"], (1 - weight) / 3 + weight * head.probabilities(both), atol=1e-6)
    np.testing.assert_allclose(mixed["gender"], 0.5 / 3 + 0.5 * plain.probabilities(both), atol=1e-6)  # not gated
    np.testing.assert_allclose(mixed["articleType"][150:], flat[150:], atol=0.05)  # photos keep (nearly) their own
    assert lookalikes.min() > 0.9
    # Each image's likeliest kind: what decides whether the detector's class constrains a garment.
    assert gate.most_probable(np.concatenate([catalogue[:2], photos[:3]])) == ["catalogue"] * 2 + ["photo"] * 3

    heads.save(tmp_path)
    loaded = load_heads(tmp_path, heads.version)
    assert [h.gated for h in loaded.heads] == [True, False] and loaded.gate.kinds == ("catalogue", "photo")
    np.testing.assert_allclose(loaded.mix({"articleType": flat}, both)["articleType"], mixed["articleType"], atol=1e-6)
    assert FeatureHeads((plain,)).version != FeatureHeads((plain,), gate).version != heads.version
    with pytest.raises(ValueError, match="need a kind gate"):
        FeatureHeads((head,))
    with pytest.raises(ValueError, match="catalogue and another kind"):
        fit_gate({"photo": photos, "street": catalogue})


def test_label_mass_gives_each_label_its_probability_and_keeps_the_served_shape_inside_it():
    rng = np.random.default_rng(3)
    articles = rng.dirichlet(np.ones(6), size=50).astype(np.float32)
    labels = rng.dirichlet(np.ones(3), size=50).astype(np.float32)
    disjoint = np.array([[1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 1, 0], [0, 0, 0, 0, 0, 1]], bool)
    mixed = label_mass(labels, disjoint, articles)
    np.testing.assert_allclose(mixed @ disjoint.T.astype(np.float32), labels, atol=1e-5)  # each set gets q(label)
    np.testing.assert_allclose(mixed[:, 0] / mixed[:, 1], articles[:, 0] / articles[:, 1], rtol=1e-4)  # shape kept
    overlapping = disjoint | np.array([[0, 0, 1, 0, 0, 0]] * 3, bool)  # one articleType allowed by every label
    np.testing.assert_allclose(label_mass(labels, overlapping, articles).sum(axis=1), 1, atol=1e-5)
    certain = np.eye(3, dtype=np.float32)[[1] * 50]  # the label is sure: only its allowed articleTypes keep mass
    assert label_mass(certain, disjoint, articles)[:, ~disjoint[1]].max() < 1e-6


def test_a_source_label_head_mixes_into_articleType_as_far_as_the_image_looks_like_its_kind(tmp_path):
    features, labels = blobs(classes=2)
    catalogue, photos = features[:150], features[150:] + 60
    gate = fit_gate({"catalogue": catalogue, "photo": photos}, c=1.0)
    known = labels[150:] >= 0
    regression = fit_head("photo", photos[known], labels[150:][known], classes=2, c=1.0, weight=1.0)
    allowed = np.array([[1, 1, 0], [0, 0, 1]], bool)  # label 0 allows articleTypes 0 and 1, label 1 allows 2
    head = SourceLabelHead("photo", ("Pants", "Shirt"), allowed, regression, 0.5)
    heads = FeatureHeads((), gate, (head,))
    both = np.concatenate([catalogue, photos])
    served = np.tile(np.array([[0.5, 0.2, 0.3]], np.float32), (len(both), 1))
    mixed = heads.mix({"articleType": served, "gender": served}, both)
    weight = 0.5 * gate.probability(both, "photo")[:, None]
    expected = (1 - weight) * served + weight * label_mass(regression.probabilities(both), allowed, served)
    np.testing.assert_allclose(mixed["articleType"], expected, atol=1e-6)
    assert mixed["gender"] is served  # articleType only
    np.testing.assert_allclose(mixed["articleType"][:150], served[:150], atol=0.05)  # thumbnails keep their own
    reads_shirt = mixed["articleType"][150:][known & (labels[150:] == 1), 2]
    assert reads_shirt.min() > 0.5  # the photos the head reads as "Shirt" move towards its articleType

    heads.save(tmp_path)
    loaded = load_heads(tmp_path, heads.version)
    assert loaded.label_heads[0].labels == ("Pants", "Shirt") and loaded.label_heads[0].weight == 0.5
    np.testing.assert_array_equal(loaded.label_heads[0].allowed, allowed)
    np.testing.assert_allclose(loaded.mix({"articleType": served}, both)["articleType"], mixed["articleType"], atol=1e-6)
    assert FeatureHeads((), gate).version != heads.version
    with pytest.raises(ValueError, match="need a kind gate"):
        FeatureHeads((), None, (head,))
    with pytest.raises(ValueError, match="kinds the gate does not know"):
        FeatureHeads((), gate, (SourceLabelHead("street", ("Pants", "Shirt"), allowed, regression, 0.5),))


def test_the_classifier_serves_the_heads_after_the_vote_and_names_them(tmp_path):
    folder = tmp_path / "fashion-lite0"
    shutil.copytree(BUNDLE, folder, ignore=shutil.ignore_patterns("evaluation", HEADS_FILE))
    plain = Classifier(folder, feature_heads=False)
    rng = np.random.default_rng(4)
    images = [rng.integers(0, 255, (90, 60, 3), dtype=np.uint8) for _ in range(6)]
    features, probs = plain.embedding_inputs(images)
    head = fit_head("gender", rng.normal(size=(60, features.shape[1])).astype(np.float32),
                    rng.integers(0, 5, 60), classes=5, c=1.0, weight=0.5)
    heads = FeatureHeads((head,))
    heads.save(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["feature_heads"] = {"version": heads.version}
    (folder / "manifest.json").write_text(json.dumps(manifest))

    served = Classifier(folder)
    voted = plain.neighbour_vote.mix(probs, project(plain.embedding_head, features))
    expected = heads.mix(voted, features)
    got = served.predict_proba(images)
    for task in probs:
        np.testing.assert_allclose(got[task], expected[task], atol=1e-5)
    assert not np.allclose(got["gender"], voted["gender"])
    tags, embeddings = served.predict_with_embeddings(images)
    assert tags == served.describe(expected)
    np.testing.assert_allclose(embeddings, plain.embed(images), atol=1e-5)  # the embedding space is unchanged
    # (the category's also names the slip paths it shows, after the rest: classification.bundle.slips_suffix)
    assert all(v.split("/")[0].removesuffix(slips_suffix(served.taxonomy)).endswith(f"+heads-{heads.version}")
               for v in served.versions.values())
    assert not any("+heads" in v for v in plain.versions.values())


def test_the_fit_cli_chooses_on_the_catalogue_validation_split(trained_bundle, tiny_catalogue, tmp_path):
    from classification import fit_feature_heads

    bundle = tmp_path / "bundle"
    shutil.copytree(trained_bundle["bundle"], bundle)
    report = fit_feature_heads.main(["--bundle", str(bundle), "--catalogue", str(tiny_catalogue),
                                     "--run-dir", str(tmp_path / "run"), "--image-cache", str(trained_bundle["run_dir"]),
                                     "--tasks", "gender,usage", "--write"])
    manifest = json.loads((bundle / "manifest.json").read_text())
    for task in ("gender", "usage"):
        chosen = report["tasks"][task]
        best = max(chosen["candidates"], key=lambda c: (c["val"], -c["weight"], -c["C"]))
        assert (chosen["C"], chosen["weight"]) == (best["C"], best["weight"])
        assert chosen["after"] == {"catalogue/val": best["val"], "catalogue/test": best["test"]}
    written = [t for t in ("gender", "usage") if report["tasks"][t]["weight"] > 0]
    classifier = Classifier(bundle)
    if written:
        assert manifest["feature_heads"]["version"] == report["version"] == classifier.feature_heads.version
        assert [h.task for h in classifier.feature_heads.heads] == written
    else:  # nothing helped on these tiny images: no heads written
        assert "feature_heads" not in manifest and classifier.feature_heads is None
    assert classifier.predict([np.full((80, 60, 3), 128, np.uint8)])[0]["gender"]["label"]


def test_the_fit_cli_gates_the_category_heads_with_a_gate_fitted_on_the_kinds(trained_bundle, tiny_catalogue, tiny_photos,
                                                                             tiny_street, tmp_path):
    from classification import fit_feature_heads

    bundle = tmp_path / "bundle"
    shutil.copytree(trained_bundle["bundle"], bundle)
    common = ["--bundle", str(bundle), "--catalogue", str(tiny_catalogue), "--run-dir", str(tmp_path / "run"),
              "--image-cache", str(trained_bundle["run_dir"]), "--tasks", "articleType,gender"]
    with pytest.raises(SystemExit, match="need a kind gate"):
        fit_feature_heads.main(common)  # no other kind to tell the catalogue from
    report = fit_feature_heads.main([*common, "--photos", str(tiny_photos), "--street", str(tiny_street),
                                     "--label-heads", "photo,street", "--halvings", "2", "--write"])
    assert report["tasks"]["articleType"]["gated"] is True and report["tasks"]["gender"]["gated"] is False
    classifier = Classifier(bundle)
    label_heads = {head.kind: head for head in (classifier.feature_heads.label_heads if classifier.feature_heads else ())}
    for kind in ("photo", "street"):  # a source-label head per kind, chosen on that kind's validation split
        chosen = report["label_heads"][kind]
        best = max(chosen["candidates"], key=lambda c: (c["articleType_group_accuracy"], -c["weight"], -c["C"]))
        assert (chosen["C"], chosen["weight"]) == (best["C"], best["weight"])
        halved = chosen["cross_half"]["validation_groups"] > 1
        assert len(chosen["cross_half"]["halvings"]) == (4 if halved else 0)  # each half choosing for the other
        assert (kind in label_heads) == (chosen["weight"] > 0)
        if kind in label_heads:
            assert label_heads[kind].weight == chosen["weight"] and len(label_heads[kind].labels) == chosen["labels"]
    if label_heads:  # they read articleType only: tasks outside the category path stay as the task heads left them
        together = report["label_heads"]["all together"]["catalogue/test"]
        assert {t: together["before"][t] for t in STYLE_TASKS + ("gender",)} == \
            {t: together["after"][t] for t in STYLE_TASKS + ("gender",)}
    if report["tasks"]["articleType"]["weight"] > 0 or label_heads:
        assert report["kind_gate"]["kinds"] == ["catalogue", "photo", "street"]
        assert set(report["kind_gate"]["held_out"]) == {"catalogue/val", "catalogue/test", "photo/val", "street/val"}
        assert classifier.feature_heads.gate is not None
        assert {h.task: h.gated for h in classifier.feature_heads.heads}["articleType"] is True
    else:  # nothing helped on these tiny images: no gate kept either
        assert "kind_gate" not in report
        assert classifier.feature_heads is None or classifier.feature_heads.gate is None
    assert classifier.predict([np.full((80, 60, 3), 128, np.uint8)])[0]["articleType"]["label"]
