import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from classification import evaluate
from classification.bundle import BundleError, load_bundle
from classification.catalogue import read_catalogue
from common.images import load_rgb
from classification.inference import Classifier
from classification.preprocess import preprocess_batch
from classification.taxonomy import TASKS
from tests.detection.fixtures import write_ccp

from .catalogue_factory import make_catalogue

ROOT = Path(__file__).resolve().parents[2]


def test_training_writes_a_complete_bundle(trained_bundle):
    bundle, manifest = trained_bundle["bundle"], trained_bundle["manifest"]
    for name in ("weights.npz", "split.json", "training_curve.png", "evaluation/report.md",
                 "evaluation/confusion_masterCategory.png", "evaluation/confusion_subCategory.png"):
        assert (bundle / name).is_file(), name
    assert manifest["weights"]["dtype"] == "float16"
    assert manifest["model"]["trunk"] == trained_bundle["trunk"]
    # Evaluated on all three kinds of image: every catalogue task, the photo and street figures.
    assert set(TASKS) <= set(manifest["metrics"]["catalogue"])
    assert set(manifest["metrics"]["intervals_95"]) == {"catalogue", "photo", "street"}
    assert set(manifest["metrics"]["intervals_95"]["catalogue"]) <= set(TASKS)
    confidence = manifest["metrics"]["confidence"]
    assert set(confidence) == {"catalogue", "photo", "street"} and set(confidence["photo"]) == {"articleType", "masterCategory"}
    share, accuracy = confidence["catalogue"]["gender"]["min_confidence"]["0.5"]
    assert 0 <= share <= 1 and (accuracy is None or 0 <= accuracy <= 1)
    for kind in ("photo", "street"):
        assert 0 <= manifest["metrics"][kind]["articleType_group_accuracy"] <= 1
        assert manifest["metrics"][kind]["images"] > 0
    split = json.loads((bundle / "split.json").read_text())
    assert split["photo"]["val"] and split["street"]["val"]
    assert manifest["training"]["command"].startswith("python -m classification.train")
    assert (trained_bundle["run_dir"] / "checkpoint.keras").is_file()


def test_reloaded_bundle_predicts_what_the_trained_model_predicted(trained_bundle, tiny_catalogue):
    import keras

    images = [load_rgb(r.image_path) for r in read_catalogue(tiny_catalogue).records[:8]]
    trained = keras.saving.load_model(trained_bundle["run_dir"] / "checkpoint.keras")
    reference = Classifier(trained_bundle["run_dir"] / "bundle-float32")
    batch = preprocess_batch(images, reference.input_size)
    direct = trained(batch, training=False)
    reloaded = reference.predict_proba(images)
    for task in TASKS:
        np.testing.assert_allclose(keras.ops.convert_to_numpy(direct[task]), reloaded[task], atol=1e-5)
    # The float16 bundle stays within rounding of the float32 one (rounding adds up over Lite0's 50 layers).
    shipped = Classifier(trained_bundle["bundle"]).predict_proba(images)
    for task in TASKS:
        np.testing.assert_allclose(shipped[task], reloaded[task], atol=1e-2)


def test_predict_handles_any_size_and_decodes_a_valid_path(trained_bundle):
    classifier = Classifier(trained_bundle["bundle"])
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in [(10, 300), (500, 40), (80, 60)]]
    results = classifier.predict(images)
    assert len(results) == 3 and classifier.predict([]) == []
    for result in results:
        path = tuple(result[level]["label"] for level in ("masterCategory", "subCategory", "articleType"))
        assert path in classifier.taxonomy.paths
        assert len(result["usage"]["top3"]) <= 3 and 0 <= result["gender"]["confidence"] <= 1


def test_label_count_mismatch_is_refused(trained_bundle, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(trained_bundle["bundle"], broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["taxonomy"]["labels"]["articleType"].append("Spacesuits")
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="articleType.*outputs but the manifest lists"):
        load_bundle(broken)


def test_corrupt_weights_are_refused(trained_bundle, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(trained_bundle["bundle"], broken)
    with open(broken / "weights.npz", "ab") as handle:
        handle.write(b"junk")
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(broken)


def test_evaluation_on_folders_never_seen(trained_bundle, tmp_path, capsys):
    from .photo_factory import make_photos

    unseen = make_catalogue(tmp_path / "unseen", n=10, seed=5, extra_rows=[])
    # One product of a type the model has never heard of: it must count as an error, not crash.
    rows = (unseen / "styles.csv").read_text().splitlines()
    rows.append("2000,Men,Apparel,Topwear,Kurtas,Red,Summer,2012,Ethnic,New kind")
    shutil.copy(unseen / "images" / "1000.jpg", unseen / "images" / "2000.jpg")
    (unseen / "styles.csv").write_text("\n".join(rows) + "\n")
    photos = make_photos(tmp_path / "photos", n=8, seed=9)
    street = write_ccp(tmp_path / "ccp", count=2)
    out = tmp_path / "r"
    reports = evaluate.main(["--bundle", str(trained_bundle["bundle"]), "--catalogue", str(unseen), "--photos",
                             str(photos), "--street", str(street), "--all-records", "--out", str(out)])
    catalogue = reports["catalogue"]
    assert catalogue["images"] == 11
    assert catalogue["tasks"]["articleType"]["unknown_labels"] == 1
    assert 0 <= catalogue["tasks"]["masterCategory"]["accuracy"] <= 1
    assert reports["photo"]["images"] == 6 and set(reports["photo"]["per_label"]) == {"T-Shirt", "Pants", "Shoes"}
    # Per photo: jeans and vest; the 15-px shoes are under the 24-px minimum crop; blouses are unknown here.
    assert reports["street"]["images"] == 4
    for kind in ("photo", "street"):
        labels = reports[kind]["per_label"].values()
        assert reports[kind]["articleType_group_accuracy"] == pytest.approx(np.mean([m["group_accuracy"] for m in labels]))
        for figure in ("articleType_group_accuracy", "articleType_group_accuracy_micro", "masterCategory_accuracy"):
            low, high = reports[kind][f"{figure}_interval_95"]
            assert low <= reports[kind][figure] + 1e-4 and reports[kind][figure] - 1e-4 <= high
    low, high = catalogue["tasks"]["articleType"]["accuracy_interval_95"]
    assert low <= catalogue["tasks"]["articleType"]["accuracy"] <= high
    report = (out / "report.md").read_text()
    assert report.startswith("# Evaluation") and "Phone photos of garments" in report and "| Pants |" in report
    assert json.loads((out / "metrics.json").read_text())["catalogue"]["tasks"]["usage"]["support"] == 11
    assert list(out.glob("mistakes_*.png"))
    assert "phone photos of garments (6 images)" in capsys.readouterr().out
    # How far each tag's confidence can be trusted, per kind: the bins add up to the images scored, and the
    # table's loosest minimum keeps every tag at least that sure.
    usage = catalogue["tasks"]["usage"]["confidence"]
    assert sum(b["images"] for b in usage["bins"]) == usage["images"] == 11
    assert usage["accuracy"] == pytest.approx(catalogue["tasks"]["usage"]["accuracy"])
    street = reports["street"]["confidence"]
    assert set(street) == {"articleType", "masterCategory"}
    assert street["articleType"]["accuracy"] == pytest.approx(reports["street"]["articleType_group_accuracy_micro"])
    assert street["masterCategory"]["accuracy"] == pytest.approx(reports["street"]["masterCategory_accuracy"])
    assert "## Confidence: how often a tag is right" in report and "| phone photos of garments | masterCategory |" in report
    assert (out / "reliability.png").stat().st_size > 1000


def test_bundle_saved_under_one_backend_loads_under_the_other(trained_bundle, tiny_catalogue):
    import keras

    other = "torch" if keras.backend.backend() == "tensorflow" else "tensorflow"
    paths = [str(r.image_path) for r in read_catalogue(tiny_catalogue).records[:6]]
    script = (
        "import json, sys\n"
        "from common.images import load_rgb\n"
        "from classification.inference import Classifier\n"
        "c = Classifier(sys.argv[1])\n"
        "p = c.predict_proba([load_rgb(x) for x in sys.argv[2:]])\n"
        "print(json.dumps({t: v.tolist() for t, v in p.items()}))\n")
    env = {**os.environ, "KERAS_BACKEND": other}
    out = subprocess.run([sys.executable, "-c", script, str(trained_bundle["bundle"]), *paths], env=env, cwd=ROOT,
                         capture_output=True, text=True, check=True)
    theirs = json.loads(out.stdout.strip().splitlines()[-1])
    ours = Classifier(trained_bundle["bundle"]).predict_proba([load_rgb(p) for p in paths])
    for task in TASKS:
        np.testing.assert_allclose(np.asarray(theirs[task]), ours[task], atol=1e-4)


def test_training_resumes_from_its_checkpoint(trained_bundle, tiny_catalogue, tiny_photos, tiny_street, tmp_path, capsys):
    from classification import train

    from .conftest import training_args

    run_dir = tmp_path / "run"
    shutil.copytree(trained_bundle["run_dir"], run_dir)
    manifest = train.main(training_args(trained_bundle["trunk"], tiny_catalogue, tiny_photos, tiny_street,
                                        tmp_path / "bundle", run_dir, epochs=2) + ["--resume", "--no-evaluate"])
    assert "resuming from epoch 1" in capsys.readouterr().out
    assert len(manifest["training"]["history"]["loss"]) == 2  # the first epoch's history was kept


def test_flip_average_is_the_mean_of_the_image_and_its_mirror(trained_bundle):
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 255, (90, 70, 3), dtype=np.uint8) for _ in range(3)]
    plain = Classifier(trained_bundle["bundle"], batch_size=2)
    flipped = Classifier(trained_bundle["bundle"], batch_size=2, flip_average=True)
    assert not plain.flip_average  # the bundle's manifest does not ask for it
    mirror = plain.predict_proba([image[:, ::-1] for image in images])
    direct = plain.predict_proba(images)
    averaged = flipped.predict_proba(images)
    for task in TASKS:
        np.testing.assert_allclose(averaged[task], (direct[task] + mirror[task]) / 2, atol=1e-5)
    assert any(not np.allclose(direct[t], averaged[t], atol=1e-6) for t in TASKS), "the mirror view changed nothing"
    # Stored analyses and embeddings say which way they were made.
    assert flipped.versions["category"].endswith("+flip/category") and "+flip" not in plain.versions["category"]
    assert "+flip" in flipped.embedding_version and "+flip" not in plain.embedding_version
    features, _ = flipped.embedding_inputs(images)
    np.testing.assert_allclose(features, (plain.embedding_inputs(images)[0]
                                          + plain.embedding_inputs([i[:, ::-1] for i in images])[0]) / 2, atol=1e-5)


def test_a_confidence_threshold_gives_the_mirror_view_only_to_the_unsure_images(trained_bundle):
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 255, (90, 70, 3), dtype=np.uint8) for _ in range(6)]
    plain = Classifier(trained_bundle["bundle"], batch_size=4)
    direct = plain.predict_proba(images)
    mirror = plain.predict_proba([image[:, ::-1] for image in images])
    confidence = direct["articleType"].max(axis=1)
    threshold = float(np.median(confidence))
    unsure = confidence < threshold
    assert unsure.any() and not unsure.all()
    some = Classifier(trained_bundle["bundle"], batch_size=4, flip_average=threshold)
    mixed = some.predict_proba(images)
    for task in TASKS:
        np.testing.assert_allclose(mixed[task][unsure], (direct[task][unsure] + mirror[task][unsure]) / 2, atol=1e-5)
        np.testing.assert_allclose(mixed[task][~unsure], direct[task][~unsure], atol=1e-6)
    assert some.versions["category"].endswith(f"+flip<{threshold:g}/category")
    assert f"+flip<{threshold:g}" in some.embedding_version
    # 0 and 1 are the two ends: one view, and every image mirrored.
    assert Classifier(trained_bundle["bundle"], flip_average=0.0).flip_average is False
    assert Classifier(trained_bundle["bundle"], flip_average=1.0).flip_average is True
    with pytest.raises(ValueError, match="between 0 and 1"):
        Classifier(trained_bundle["bundle"], flip_average=1.5)


def test_evaluating_with_the_mirror_view_makes_the_bundle_serve_with_it(trained_bundle, tiny_catalogue, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(trained_bundle["bundle"], bundle)
    evaluate.main(["--bundle", str(bundle), "--catalogue", str(tiny_catalogue), "--flip-average", "--update-manifest"])
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["inference"] == {"flip_average": True, "neighbour_vote": None, "feature_heads": None,
                                     "thumbnail_specialist": None}
    assert "no neighbour vote" in (bundle / "evaluation" / "report.md").read_text()
    assert Classifier(bundle).flip_average and not Classifier(bundle, flip_average=False).flip_average
    evaluate.main(["--bundle", str(bundle), "--catalogue", str(tiny_catalogue), "--flip-below", "0.8",
                   "--update-manifest"])
    inference = json.loads((bundle / "manifest.json").read_text())["inference"]
    assert inference == {"flip_average": 0.8, "neighbour_vote": None, "feature_heads": None,
                         "thumbnail_specialist": None}
    assert Classifier(bundle).flip_average == 0.8 and "under 0.8" in (bundle / "evaluation" / "report.md").read_text()
    # what else the manifest says about serving (the size garments are read at) survives a new evaluation
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["inference"]["garment_input_size"] = size = [v + 16 for v in manifest["model"]["input_size"]]
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    evaluate.main(["--bundle", str(bundle), "--catalogue", str(tiny_catalogue), "--no-flip-average", "--update-manifest"])
    assert not Classifier(bundle).flip_average
    inference = json.loads((bundle / "manifest.json").read_text())["inference"]
    assert inference["garment_input_size"] == size and Classifier(bundle).garment_input_size == tuple(size)
    # the manifest keeps the figures of the bundle as it serves: never those without its neighbour vote
    with pytest.raises(SystemExit):
        evaluate.main(["--bundle", str(bundle), "--catalogue", str(tiny_catalogue), "--no-neighbour-vote",
                       "--update-manifest"])


def test_street_crops_are_evaluated_as_the_pipeline_reads_garments(trained_bundle, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(trained_bundle["bundle"], bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    size = [v + 16 for v in manifest["model"]["input_size"]]
    manifest.setdefault("inference", {})["garment_input_size"] = size
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    crops = [np.random.default_rng(seed).integers(0, 255, (90, 70, 3), dtype=np.uint8) for seed in (1, 2)]
    served, at_garment_size = Classifier(bundle), Classifier(bundle, input_size=tuple(size))
    as_garments, as_images = served.predict_proba(crops, garments=True), served.predict_proba(crops)
    for task in TASKS:
        np.testing.assert_allclose(as_garments[task], at_garment_size.predict_proba(crops)[task], atol=1e-5)
    assert any(not np.allclose(as_garments[t], as_images[t], atol=1e-5) for t in TASKS)  # another reading
    out = tmp_path / "r"
    evaluate.main(["--bundle", str(bundle), "--street", str(write_ccp(tmp_path / "ccp", count=2)), "--all-records",
                   "--out", str(out), "--update-manifest"])
    assert f"Read at {size[0]}x{size[1]} (the size the pipeline reads detected garments at)" in (out / "report.md").read_text()
    assert f"street crops read at {size[0]}x{size[1]}" in json.loads(
        (bundle / "manifest.json").read_text())["metrics"]["definitions"]["photo/street"]


def test_the_same_weights_run_at_another_input_size(trained_bundle):
    bundle_size = tuple(trained_bundle["manifest"]["model"]["input_size"])
    other = (bundle_size[0] + 16, bundle_size[1] + 12)
    classifier = Classifier(trained_bundle["bundle"], input_size=other)
    assert classifier.input_size == other and classifier.model.input_shape[1:3] == other
    image = np.random.default_rng(1).integers(0, 255, (90, 70, 3), dtype=np.uint8)
    probs = classifier.predict_proba([image])
    assert all(np.isclose(probs[t].sum(), 1.0, atol=1e-4) for t in TASKS)


def test_init_from_a_bundle_starts_from_its_weights_at_another_input_size(trained_bundle, tiny_catalogue, tiny_photos,
                                                                          tiny_street, tmp_path):
    from classification import train

    from .conftest import training_args

    size = [str(s + 8) for s in trained_bundle["manifest"]["model"]["input_size"]]
    manifest = train.main(training_args(trained_bundle["trunk"], tiny_catalogue, tiny_photos, tiny_street,
                                        tmp_path / "bundle", tmp_path / "run", epochs=0)
                          + ["--init-from", str(trained_bundle["bundle"]), "--height", size[0], "--input-width", size[1],
                             "--street-per-epoch", "3", "--balance-labels", "0.5", "--no-evaluate"])
    assert manifest["model"]["input_size"] == [int(s) for s in size]
    assert manifest["training"]["initialised_from"]["version"] == trained_bundle["manifest"]["version"]
    assert manifest["training"]["street_per_epoch"] == 3 and manifest["training"]["balance_labels"] == 0.5
    with np.load(trained_bundle["bundle"] / "weights.npz") as before, np.load(tmp_path / "bundle" / "weights.npz") as after:
        assert sorted(before.files) == sorted(after.files)
        assert all(np.array_equal(before[k], after[k]) for k in before.files)


def test_init_from_refuses_a_bundle_of_another_trunk(trained_bundle, tiny_catalogue, tiny_photos, tiny_street, tmp_path):
    from classification import train

    from .conftest import TRUNK_OPTIONS, training_args

    other = next(t for t in sorted(TRUNK_OPTIONS) if t != trained_bundle["trunk"])
    with pytest.raises(SystemExit, match="trunk"):
        train.main(training_args(other, tiny_catalogue, tiny_photos, tiny_street, tmp_path / "bundle",
                                 tmp_path / "run", epochs=0) + ["--init-from", str(trained_bundle["bundle"])])


def test_init_from_refuses_a_split_that_trains_on_the_bundles_held_out_images(trained_bundle, tiny_catalogue,
                                                                               tiny_photos, tiny_street, tmp_path):
    from classification import train

    from .conftest import training_args

    args = training_args(trained_bundle["trunk"], tiny_catalogue, tiny_photos, tiny_street, tmp_path / "bundle",
                         tmp_path / "run", epochs=0) + ["--init-from", str(trained_bundle["bundle"]), "--no-evaluate"]
    with pytest.raises(SystemExit, match="held out"):
        train.main(args + ["--split-seed", "8"])
    assert not (tmp_path / "bundle").exists()
    # Another training order on the bundle's own split is a plain continuation.
    manifest = train.main(args + ["--seed", "8"])
    assert (manifest["training"]["data"]["seed"], manifest["training"]["data"]["split_seed"]) == (8, 1234)
    assert json.loads((tmp_path / "bundle" / "split.json").read_text()) == \
        json.loads((trained_bundle["bundle"] / "split.json").read_text())


def test_training_can_serve_the_average_of_its_weights(trained_bundle, tiny_catalogue, tiny_photos, tiny_street, tmp_path):
    from classification import train

    from .conftest import training_args

    run_dir = tmp_path / "run"
    manifest = train.main(training_args(trained_bundle["trunk"], tiny_catalogue, tiny_photos, tiny_street,
                                        tmp_path / "bundle", run_dir, epochs=2)
                          + ["--average-from-epoch", "2", "--average-every", "1", "--no-evaluate"])
    assert manifest["training"]["weight_average"]["samples"] == 2  # the second epoch's two steps
    assert manifest["training"]["schedule"].startswith("constant")
    with np.load(run_dir / "weight_average.npz") as saved:
        assert int(saved["count"]) == 2
    Classifier(tmp_path / "bundle").predict_proba([np.zeros((80, 60, 3), np.uint8)])


def test_averaged_bundles_hold_the_weighted_mean_of_their_weights(trained_bundle, tiny_catalogue, tiny_photos,
                                                                 tiny_street, tmp_path):
    from classification import average_bundles, train

    from .conftest import training_args

    other = tmp_path / "other"
    train.main(training_args(trained_bundle["trunk"], tiny_catalogue, tiny_photos, tiny_street, other,
                             tmp_path / "run", epochs=1) + ["--init-from", str(trained_bundle["bundle"]), "--no-evaluate"])
    soup = tmp_path / "soup"
    manifest = average_bundles.main(["--bundle", str(trained_bundle["bundle"]), "--bundle", str(other),
                                     "--weight", "1", "--weight", "3", "--out", str(soup)])
    assert [s["weight"] for s in manifest["training"]["soup"]] == [0.25, 0.75]
    other_training = json.loads((other / "manifest.json").read_text())["training"]
    assert manifest["training"]["soup"][1]["training"]["command"] == other_training["command"]
    with np.load(trained_bundle["bundle"] / "weights.npz") as a, np.load(other / "weights.npz") as b, \
            np.load(soup / "weights.npz") as mean:
        changed = [k for k in a.files if a[k].dtype.kind == "f" and not np.array_equal(a[k], b[k])]
        assert changed, "the second bundle trained on: its weights differ"
        for key in changed:
            expected = 0.25 * a[key].astype(np.float64) + 0.75 * b[key].astype(np.float64)
            np.testing.assert_allclose(mean[key].astype(np.float64), expected, rtol=2e-3, atol=2e-3)
    assert (soup / "split.json").is_file()
    Classifier(soup).predict_proba([np.zeros((80, 60, 3), np.uint8)])
    with pytest.raises(ValueError, match="one non-negative weight per bundle"):
        average_bundles.main(["--bundle", str(other), "--bundle", str(soup), "--weight", "1", "--out", str(tmp_path / "x")])


def test_the_category_version_names_the_slips_shown_and_count_paths_stores_them(trained_bundle, tiny_catalogue,
                                                                              tmp_path):
    from classification.bundle import slips_suffix
    from classification.count_paths import count_paths
    from classification.inference import Classifier
    from classification.taxonomy import Taxonomy

    bundle = tmp_path / "bundle"
    shutil.copytree(trained_bundle["bundle"], bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["taxonomy"]["path_images"]  # training counts the paths
    del manifest["taxonomy"]["path_images"]  # as a bundle written before that
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    before = Classifier(bundle)
    assert count_paths(bundle, tiny_catalogue).path_images
    after = Classifier(bundle)
    slips = slips_suffix(after.taxonomy)
    assert after.versions["category"] == before.versions["category"].replace("/category", f"{slips}/category")
    assert after.versions["style"] == before.versions["style"] and after.embedding_version == before.embedding_version
    assert slips.startswith("+paths-") == bool(after.taxonomy.slips)
    toy = Taxonomy(labels={"masterCategory": ("A",), "subCategory": ("B", "C"), "articleType": ("D",)},
                   paths=(("A", "B", "D"), ("A", "C", "D")), path_images=(40, 2))
    assert slips_suffix(toy).startswith("+paths-") and slips_suffix(toy) == slips_suffix(Taxonomy.from_dict(toy.to_dict()))
    other = tmp_path / "other"  # another catalogue: one more articleType
    shutil.copytree(tiny_catalogue, other)
    with open(other / "styles.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    rows[1][rows[0].index("articleType")] = "Spaceships"
    with open(other / "styles.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    with pytest.raises(SystemExit, match="differ"):
        count_paths(bundle, other)
    assert Classifier(bundle).versions == after.versions  # nothing written
