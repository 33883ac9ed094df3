import json
import multiprocessing

import numpy as np
import pytest

from classification import packed_data
from classification.augment import PhotoAugmenter
from classification.catalogue import read_catalogue
from classification.sources import LABEL_MAPS, kind_split, read_sources
from classification.taxonomy import Taxonomy

from .conftest import training_args


def pack_tiny(out, catalogue, photos, street, *extra):
    return packed_data.main(["--catalogue", str(catalogue), "--photos", str(photos), "--street", str(street),
                             "--out", str(out), "--max-side", "64", *extra])


def test_a_pack_holds_the_training_parts_of_each_kind_and_the_real_split(tiny_catalogue, tiny_photos, tiny_street,
                                                                         tmp_path):
    summary = pack_tiny(tmp_path / "pack", tiny_catalogue, tiny_photos, tiny_street)
    catalogue = read_catalogue(tiny_catalogue).records
    taxonomy = Taxonomy.from_records(catalogue)
    records, split = read_sources(catalogue, taxonomy, tiny_photos, LABEL_MAPS / "clothing-dataset.json",
                                  tiny_street, LABEL_MAPS / "clothing-co-parsing.json")
    pack = packed_data.read_pack(tmp_path / "pack")
    assert pack.split == json.loads(json.dumps(split)) and pack.taxonomy.to_dict() == taxonomy.to_dict()
    for kind, kind_records in records.items():
        parts = kind_split(split, kind)
        packed_ids = [r.id for r in pack.records[kind]]
        assert sorted(packed_ids) == sorted(parts["train"] + parts["val"]), kind
        assert summary["counts"][kind] == len(packed_ids)
        # Label sets, groups and source labels survive the trip.
        originals = {r.id: r for r in kind_records}
        for record in pack.records[kind]:
            original = originals[record.id]
            assert (record.allowed, record.group, record.source_label) == (original.allowed, original.group,
                                                                          original.source_label)
        images = pack.images(kind)
        assert len(images) == len(packed_ids)
        assert all(image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 for image in images)
        if kind != "catalogue":
            assert max(max(image.shape[:2]) for image in images) <= 64
    assert not set(split["test"]) & {r.id for r in pack.records["catalogue"]}  # held out stays out


def test_packed_images_stay_close_to_the_originals(tiny_catalogue, tiny_photos, tiny_street, tmp_path):
    from classification.data import load_image

    pack_tiny(tmp_path / "pack", tiny_catalogue, tiny_photos, tiny_street, "--quality", "90")
    pack = packed_data.read_pack(tmp_path / "pack")
    originals = {r.id: r for r in read_sources(read_catalogue(tiny_catalogue).records,
                                               pack.taxonomy)[0]["catalogue"]}
    for record, image in zip(pack.records["catalogue"][:5], pack.images("catalogue")[:5]):
        original = load_image(originals[record.id]).astype(np.float32)
        assert image.shape == original.shape
        assert np.abs(image - original).mean() < 8  # lossy, not wrong: mean error of a few grey levels


def test_training_from_a_pack_writes_a_bundle_the_folders_evaluate(trained_bundle, tiny_catalogue, tiny_photos,
                                                                   tiny_street, tmp_path, capsys):
    from classification import evaluate, train

    pack_tiny(tmp_path / "pack", tiny_catalogue, tiny_photos, tiny_street)
    args = training_args(trained_bundle["trunk"], tiny_catalogue, tiny_photos, tiny_street, tmp_path / "bundle",
                         tmp_path / "run")
    args = args[6:]  # the same options without the three source folders
    assert args[0] == "--bundle"
    manifest = train.main(["--packed", str(tmp_path / "pack"), *args])
    assert "trained from a pack: evaluate" in capsys.readouterr().out
    data = manifest["training"]["data"]
    assert data["packed"] == str(tmp_path / "pack") and data["packed_parts"] == ["train", "val"]
    assert data["catalogue"] == str(tiny_catalogue)
    split = json.loads((tmp_path / "bundle" / "split.json").read_text())
    assert split == packed_data.read_pack(tmp_path / "pack").split
    # Evaluated where the full data is, on the held-out images of the real split.
    reports = evaluate.main(["--bundle", str(tmp_path / "bundle"), "--catalogue", str(tiny_catalogue),
                             "--photos", str(tiny_photos), "--street", str(tiny_street)])
    assert reports["catalogue"]["images"] == len(split["test"])
    assert reports["photo"]["images"] == len(split["photo"]["val"])


def test_train_takes_either_folders_or_a_pack(tiny_catalogue, tmp_path):
    from classification import train

    with pytest.raises(SystemExit):
        train.parse_args(["--bundle", "b", "--run-dir", "r"])
    with pytest.raises(SystemExit):
        train.parse_args(["--packed", "p", "--catalogue", str(tiny_catalogue), "--bundle", "b", "--run-dir", "r"])


def _augment_in_child(augmenter, image, queue):
    queue.put(augmenter(image, "photo"))


def test_forked_batch_workers_draw_different_augmentations():
    image = np.random.default_rng(0).integers(0, 255, (96, 72, 3), dtype=np.uint8)
    augmenter = PhotoAugmenter((64, 48), seed=3)
    context = multiprocessing.get_context("fork")
    outputs = []
    for _ in range(3):
        queue = context.Queue()
        child = context.Process(target=_augment_in_child, args=(augmenter, image, queue))
        child.start()
        outputs.append(queue.get(timeout=60))
        child.join(timeout=60)
    # Without reseeding, every child would repeat the parent's first draw exactly.
    assert not all(np.array_equal(outputs[0], other) for other in outputs[1:])
    # The parent's own stream is untouched: same seed, same first draw.
    assert np.array_equal(augmenter(image, "photo"), PhotoAugmenter((64, 48), seed=3)(image, "photo"))


def test_a_time_limit_stops_training_after_an_epoch_and_still_writes_the_bundle(tiny_catalogue, tiny_photos,
                                                                                 tiny_street, tmp_path):
    from classification import train
    from classification.inference import Classifier

    manifest = train.main(training_args("vgg19", tiny_catalogue, tiny_photos, tiny_street, tmp_path / "bundle",
                                        tmp_path / "run", epochs=3) + ["--time-limit", "0.001", "--no-evaluate"])
    assert manifest["training"]["epochs"] == 1 and manifest["training"]["epochs_planned"] == 3
    assert manifest["training"]["stopped_by_time_limit_after_epoch"] == 1
    Classifier(tmp_path / "bundle").predict_proba([np.zeros((80, 60, 3), np.uint8)])
    # A run that ends at its last planned epoch was not stopped, whatever the limit.
    manifest = train.main(training_args("vgg19", tiny_catalogue, tiny_photos, tiny_street, tmp_path / "bundle1",
                                        tmp_path / "run1", epochs=1) + ["--time-limit", "0.001", "--no-evaluate"])
    assert manifest["training"]["epochs"] == 1 and "stopped_by_time_limit_after_epoch" not in manifest["training"]


def test_batches_prepared_in_worker_processes_train_the_model(tiny_catalogue, tmp_path):
    from classification import train

    manifest = train.main(["--catalogue", str(tiny_catalogue), "--bundle", str(tmp_path / "bundle"),
                           "--run-dir", str(tmp_path / "run"), "--epochs", "1", "--steps-per-epoch", "3",
                           "--batch-size", "8", "--workers", "2", "--processes", "--no-evaluate",
                           "--width", "0.125", "--head-units", "32"])
    assert manifest["training"]["steps_per_epoch"] == 3 and manifest["training"]["precision"] == "float32"
    assert np.isfinite(manifest["training"]["history"]["loss"][0])
