"""The thumbnail specialist: how its reading is mixed into the served tags, and how a bundle names it."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from classification.attach_thumbnail_specialist import main as attach, specialist_entry
from classification.thumbnail_specialist import (FOLDER, corrected, rows_to_read, settings_of, specialist_suffix,
                                                 specialist_version)
from common.bundles import BundleError

BUNDLE = Path(__file__).resolve().parents[2] / "models" / "fashion-lite0"


def _rows(*rows):
    return {"articleType": np.asarray(rows, np.float32)}


def test_without_people_rows_the_specialist_is_mixed_in_by_the_gate():
    served = _rows([0.6, 0.4, 0.0], [0.2, 0.8, 0.0], [0.5, 0.5, 0.0])
    specialist = _rows([0.0, 0.0, 1.0], [1.0, 0.0, 0.0])  # its reading of rows 0 and 2
    gate = np.array([0.9, 0.99, 0.6], np.float32)
    out = corrected(served, served, specialist, np.array([0, 2]), gate, weight=0.5)
    w0, w2 = 0.5 * 0.9, 0.5 * 0.6
    np.testing.assert_allclose(out["articleType"][0], (1 - w0) * served["articleType"][0] + w0 * np.array([0, 0, 1]), atol=1e-6)
    np.testing.assert_allclose(out["articleType"][2], (1 - w2) * served["articleType"][2] + w2 * np.array([1, 0, 0]), atol=1e-6)
    np.testing.assert_array_equal(out["articleType"][1], served["articleType"][1])  # not read: as served
    assert out["articleType"] is not served["articleType"] and served["articleType"][0, 2] == 0  # input untouched


def test_what_people_rows_moved_stays_moved():
    without_people = _rows([0.5, 0.5, 0.0])
    with_people = _rows([0.3, 0.5, 0.2])  # a labelled neighbour pulled row 0 towards class 2
    specialist = _rows([0.9, 0.1, 0.0])
    out = corrected(with_people, without_people, specialist, np.array([0]), np.array([1.0]), weight=1.0)
    # the specialist's reading plus the people rows' shift (-0.2, 0, +0.2), clipped at zero and renormalised
    expected = np.array([0.7, 0.1, 0.2])
    np.testing.assert_allclose(out["articleType"][0], expected / expected.sum(), atol=1e-6)
    clipped = corrected(with_people, without_people, _rows([0.1, 0.9, 0.0]), np.array([0]), np.array([1.0]), 1.0)
    assert clipped["articleType"].min() >= 0 and np.isclose(clipped["articleType"].sum(), 1.0)


def test_only_rows_at_or_over_the_minimum_gate_are_read():
    np.testing.assert_array_equal(rows_to_read(np.array([0.2, 0.5, 0.99, 0.49]), 0.5), [1, 2])
    assert specialist_suffix(None) == "" and specialist_suffix("abc") == "+thumbs-abc"


def _manifests(tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    manifest = json.loads((BUNDLE / "manifest.json").read_text())
    manifest.pop("thumbnail_specialist", None)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    specialist = dict(manifest, version="0123456789ab")
    return bundle, manifest, specialist


def test_a_bundle_names_its_specialist_with_a_version_it_checks(tmp_path):
    bundle, manifest, specialist = _manifests(tmp_path)
    entry = specialist_entry(manifest, specialist, 1.0, 0.5, "attach")
    assert entry["version"] == specialist_version(specialist, 1.0, 0.5) != specialist_version(specialist, 0.8, 0.5)
    assert settings_of(bundle, manifest) is None  # none named: none served
    with pytest.raises(BundleError, match="no manifest"):
        settings_of(bundle, {**manifest, "thumbnail_specialist": entry})
    (bundle / FOLDER).mkdir()
    (bundle / FOLDER / "manifest.json").write_text(json.dumps(specialist))
    settings = settings_of(bundle, {**manifest, "thumbnail_specialist": entry})
    assert (settings.folder, settings.weight, settings.min_gate) == (bundle / FOLDER, 1.0, 0.5)
    (bundle / FOLDER / "manifest.json").write_text(json.dumps(dict(specialist, version="ffffffffffff")))
    with pytest.raises(BundleError, match="replaced files"):
        settings_of(bundle, {**manifest, "thumbnail_specialist": entry})


def test_a_specialist_that_cannot_serve_beside_the_bundle_is_refused(tmp_path):
    _, manifest, specialist = _manifests(tmp_path)
    with pytest.raises(BundleError, match="input size"):
        specialist_entry(manifest, {**specialist, "model": {**specialist["model"], "input_size": [224, 224]}}, 1.0, 0.5, "")
    bare = {key: value for key, value in specialist.items() if key not in ("neighbour_vote", "feature_heads")}
    with pytest.raises(BundleError, match="no vote or feature heads"):
        specialist_entry(manifest, bare, 1.0, 0.5, "")
    with pytest.raises(BundleError, match="taxonomy"):
        specialist_entry(manifest, {**specialist, "taxonomy": {}}, 1.0, 0.5, "")


def test_attach_copies_what_serves_and_remove_takes_it_out(tmp_path):
    bundle, _, _ = _manifests(tmp_path)
    source = tmp_path / "specialist"
    source.mkdir()
    served = json.loads((BUNDLE / "manifest.json").read_text())
    served.pop("thumbnail_specialist", None)
    (source / "manifest.json").write_text(json.dumps(served))
    for name in ("weights.npz", "split.json"):  # stand-ins: attach copies files, it does not read them
        (source / name).write_bytes(b"x")
    attach(["--bundle", str(bundle), "--specialist", str(source), "--weight", "0.8", "--write"])
    assert sorted(p.name for p in (bundle / FOLDER).iterdir()) == ["manifest.json", "weights.npz"]
    entry = json.loads((bundle / "manifest.json").read_text())["thumbnail_specialist"]
    assert (entry["weight"], entry["min_gate"], entry["version"]) == (0.8, 0.5, specialist_version(served, 0.8, 0.5))
    attach(["--bundle", str(bundle), "--remove", "--write"])
    assert not (bundle / FOLDER).exists()
    assert "thumbnail_specialist" not in json.loads((bundle / "manifest.json").read_text())
    shutil.rmtree(bundle)



# ---- the served bundle's specialist ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def served():
    from classification.inference import Classifier
    return Classifier(BUNDLE), Classifier(BUNDLE, thumbnail_specialist=False)


def _held_out_images(datasets: Path) -> list[np.ndarray]:
    """Three held-out catalogue thumbnails and three phone photos of the bundle's validation senders."""
    from PIL import Image

    split = json.loads((BUNDLE / "split.json").read_text())
    thumbnails = [datasets / "fashion-product-images-small" / "images" / f"{i}.jpg" for i in split["test"][:3]]
    photos = [datasets / "clothing-dataset" / "images" / f"{i}.jpg" for i in split["photo"]["val"][:3]]
    return [np.asarray(Image.open(path).convert("RGB")) for path in thumbnails + photos]


def test_the_served_bundle_reads_thumbnails_with_its_specialist_and_nothing_else(served, shared_datasets):
    with_it, without = served
    assert with_it.specialist is not None and without.specialist is None
    images = _held_out_images(shared_datasets)
    features = with_it.embedding_inputs(images)[0]
    gate = with_it.feature_heads.gate.catalogue_probability(features)
    read = gate >= with_it.specialist_settings.min_gate
    assert read.tolist() == [True] * 3 + [False] * 3  # the gate tells these thumbnails from these photos
    plain = without.predict_proba(images)
    expected = corrected(plain, plain, with_it.specialist.predict_proba(images[:3]), np.arange(3), gate,
                         with_it.specialist_settings.weight)
    got = with_it.predict_proba(images)
    for task in got:
        np.testing.assert_allclose(got[task], expected[task], atol=1e-5)
        np.testing.assert_allclose(got[task][3:], plain[task][3:], atol=1e-5)  # photos: as served without it
    assert not np.allclose(got["articleType"][:3], plain["articleType"][:3], atol=1e-3)
    # garments never reach it: the same picture read as a crop of the first is tagged as without it
    tags, embeddings = with_it.predict_with_embeddings([images[0], images[0]], whole_image_rows=[0, 0])
    plain_tags, plain_embeddings = without.predict_with_embeddings([images[0], images[0]], whole_image_rows=[0, 0])
    _same_tags(tags[1], plain_tags[1])
    _same_tags(tags[0], with_it.describe({t: v[:1] for t, v in got.items()})[0])
    np.testing.assert_allclose(embeddings, plain_embeddings, atol=1e-5)  # embeddings never change with it
    assert with_it.embedding_version == without.embedding_version
    assert all("+thumbs-" in v for v in with_it.versions.values())
    assert not any("+thumbs-" in v for v in without.versions.values())


def _same_tags(a: dict, b: dict) -> None:
    """The same label per task, the same confidence to float rounding (batches of another size)."""
    for task in ("gender", "masterCategory", "subCategory", "articleType", "baseColour", "season", "usage"):
        assert a[task]["label"] == b[task]["label"] and a[task]["confidence"] == pytest.approx(b[task]["confidence"], abs=1e-4)
