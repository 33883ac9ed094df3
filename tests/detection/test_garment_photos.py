import csv
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from detection import train
from detection.garment_photos import LABEL_MAPS, PHOTO_ID_BASE, garment_mask, read_garment_photos, read_photo_label_map
from detection.taxonomy import CCP_CLASSES

from .fixtures import write_ccp

ROOT_MAPS = LABEL_MAPS.parents[1] / "classification" / "label_maps"


def photo_of_a_garment(seed: int, shape: str = "tshirt", size=(240, 320)) -> tuple[np.ndarray, np.ndarray]:
    """A textured background (a bed sheet's noise) with one flat-coloured garment shape on it: (image, its mask)."""
    width, height = size
    rng = np.random.default_rng(seed)
    image = (rng.normal(200, 12, (height, width, 3)).clip(0, 255)).astype(np.uint8)
    canvas = Image.new("1", size, 0)
    draw = ImageDraw.Draw(canvas)
    if shape == "speck":  # nothing a garment's size: a 4x4 dot
        draw.rectangle([118, 158, 121, 161], fill=1)
    elif shape == "tshirt":  # a body with two sleeves
        draw.rectangle([70, 80, 170, 260], fill=1)
        draw.polygon([(70, 80), (25, 130), (45, 150), (70, 120)], fill=1)
        draw.polygon([(170, 80), (215, 130), (195, 150), (170, 120)], fill=1)
    else:  # trousers: two legs from a waistband
        draw.rectangle([80, 40, 160, 80], fill=1)
        draw.polygon([(80, 80), (118, 80), (112, 290), (78, 290)], fill=1)
        draw.polygon([(122, 80), (160, 80), (162, 290), (128, 290)], fill=1)
    mask = np.asarray(canvas, dtype=bool)
    colour = rng.integers(20, 120, 3)
    image[mask] = (colour + rng.normal(0, 6, (int(mask.sum()), 3))).clip(0, 255).astype(np.uint8)
    return image, mask


def write_garment_photos(root, rows, seed=0):
    """A clothing-dataset layout folder: `rows` of (image id, sender, label); each photo one garment (trousers
    for Pants, a speck GrabCut cannot outline for Hat, a T-shirt otherwise)."""
    (root / "images").mkdir(parents=True)
    with open(root / "images.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "sender_id", "label", "kids"])
        for n, (image_id, sender, label) in enumerate(rows):
            writer.writerow([image_id, sender, label, "False"])
            image, _ = photo_of_a_garment(seed + n, {"Pants": "trousers", "Hat": "speck"}.get(label, "tshirt"))
            Image.fromarray(image).save(root / "images" / f"{image_id}.jpg", quality=92)
    return root


@pytest.mark.parametrize("shape", ["tshirt", "trousers"])
def test_grabcut_outlines_the_one_garment_on_a_textured_background(shape):
    image, truth = photo_of_a_garment(3, shape)
    mask = garment_mask(image)
    assert mask is not None and mask.shape == truth.shape
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.9, iou


def test_a_photo_without_a_garment_sized_object_gives_no_mask():
    image, _ = photo_of_a_garment(3, "speck")
    assert garment_mask(image) is None


def test_the_shipped_label_map_covers_the_classifier_map_of_the_same_photos():
    class_of, ignored = read_photo_label_map(LABEL_MAPS / "clothing-dataset.json", CCP_CLASSES)
    classifier_map = json.loads((ROOT_MAPS / "clothing-dataset.json").read_text())
    assert set(class_of) | ignored == set(classifier_map["labels"]) | set(classifier_map["ignore"])
    assert CCP_CLASSES[class_of["Pants"] - 1] == "trousers" and CCP_CLASSES[class_of["Blazer"] - 1] == "outerwear"
    assert "Shoes" in ignored  # a pair is two instances


def test_a_label_map_naming_an_unknown_class_is_refused(tmp_path):
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"labels": {"Pants": "trouser"}}))
    with pytest.raises(ValueError, match="trouser"):
        read_photo_label_map(path, CCP_CLASSES)


def test_records_keep_only_mapped_labels_of_the_chosen_photos(tmp_path):
    root = write_garment_photos(tmp_path / "photos", [("a", 1, "Pants"), ("b", 1, "T-Shirt"), ("c", 2, "Shoes"),
                                                      ("d", 2, "Not sure"), ("e", 3, "Pants")])
    records = read_garment_photos(root, LABEL_MAPS / "clothing-dataset.json", CCP_CLASSES, image_ids=["a", "b", "c"])
    assert [r.image_path.stem for r in records] == ["a", "b"] and records[0].image_id >= PHOTO_ID_BASE
    (trousers,), (top,) = records[0].instances(), records[1].instances()
    assert CCP_CLASSES[trousers.category - 1] == "trousers" and CCP_CLASSES[top.category - 1] == "top"
    x1, y1, x2, y2 = trousers.box
    assert 70 <= x1 <= 90 and 150 <= x2 <= 170 and y2 >= 280  # the trousers drawn at x 78-162, y 40-290


def test_a_label_the_map_does_not_know_is_an_error_not_a_silent_skip(tmp_path):
    root = write_garment_photos(tmp_path / "photos", [("a", 1, "Pants"), ("b", 1, "Cape")])
    with pytest.raises(ValueError, match="Cape"):
        read_garment_photos(root, LABEL_MAPS / "clothing-dataset.json", CCP_CLASSES)


def test_training_adds_the_photos_of_the_split_and_records_them(tmp_path):
    ccp = write_ccp(tmp_path / "ccp", count=4)
    photos = write_garment_photos(tmp_path / "photos", [("a", 1, "Pants"), ("b", 1, "T-Shirt"), ("h", 1, "Hat"),
                                                        ("c", 2, "Dress")])
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"photo": {"train": ["a", "b", "h"], "val": ["c"]}}))
    train.main(["--dataset", "ccp", "--data", str(ccp), "--bundle", str(tmp_path / "bundle"),
                "--run-dir", str(tmp_path / "run"), "--epochs", "1", "--max-iters", "2", "--min-size", "64",
                "--max-size", "96", "--workers", "0", "--val-fraction", "0.25", "--cache",
                "--mask-head-channels", "32", "--mask-head-layers", "1", "--roi-samples", "16",
                "--rpn-train-proposals", "100", "50", "--rpn-test-proposals", "40", "20",
                "--garment-photos", str(photos), "--garment-photo-split", str(split)])
    data = json.loads((tmp_path / "bundle" / "manifest.json").read_text())["training"]["data"]
    # The held-out sender's photo is not read; the one GrabCut cannot outline is dropped, not trained as background.
    assert data["garment_photos"]["photos"] == 3 and data["garment_photos"]["dropped_without_mask"] == 1
    assert data["split"] == {"train": 3, "val": 1}  # validation stays street photos only
    assert (tmp_path / "bundle" / "garment_photos.png").is_file()


def test_garment_photos_need_the_cache(tmp_path):
    with pytest.raises(SystemExit):
        train.parse_args(["--dataset", "ccp", "--data", str(tmp_path), "--bundle", str(tmp_path / "b"),
                          "--run-dir", str(tmp_path / "r"), "--garment-photos", str(tmp_path)])


def test_a_record_has_the_size_of_the_upright_photo_its_mask_is_cut_from(tmp_path):
    root = write_garment_photos(tmp_path / "photos", [("a", 1, "Pants")])
    path = root / "images" / "a.jpg"
    with Image.open(path) as image:  # stored sideways, with the EXIF tag a phone writes to turn it upright
        exif = image.getexif()
        exif[0x0112] = 6
        image.save(path, exif=exif)
    (record,) = read_garment_photos(root, LABEL_MAPS / "clothing-dataset.json", CCP_CLASSES)
    (trousers,) = record.instances()
    assert trousers.mask.shape == (record.height, record.width) == (240, 320)
