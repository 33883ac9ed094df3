import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from classification.augment import PhotoAugmenter, background_mask
from classification.catalogue import read_catalogue
from classification.label_map import LabelMap
from classification.photo_datasets import read_labelled_photos, read_street_crops, split_by_group, split_street_crops
from classification.records import LabelledImage
from classification.taxonomy import Taxonomy
from classification.sources import LABEL_MAPS, held_out_leaks, read_sources
from tests.detection.fixtures import write_ccp

from .catalogue_factory import make_catalogue
from .photo_factory import make_photos


@pytest.fixture(scope="module")
def taxonomy(tmp_path_factory):
    return Taxonomy.from_records(read_catalogue(make_catalogue(tmp_path_factory.mktemp("c"), n=24)).records)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 12), min_size=1, max_size=80), st.floats(0.05, 0.6), st.integers(0, 99))
def test_sender_split_never_puts_a_sender_on_both_sides(senders, fraction, seed):
    records = [LabelledImage(str(i), None, "photo", {}, group=f"sender:{s}") for i, s in enumerate(senders)]
    split = split_by_group(records, fraction, seed)
    assert sorted(split["train"] + split["val"], key=int) == [r.id for r in records]
    group = {r.id: r.group for r in records}
    assert not {group[i] for i in split["train"]} & {group[i] for i in split["val"]}


def test_labelled_photos_through_the_shipped_label_map(tmp_path, taxonomy):
    folder = make_photos(tmp_path / "photos", n=12)
    records = read_labelled_photos(folder, LabelMap.load(LABEL_MAPS / "clothing-dataset.json"), taxonomy)
    assert len(records) == 9  # the three "Not sure" photos are skipped
    pants = next(r for r in records if r.source_label == "Pants")
    assert pants.allowed["articleType"] == ("Jeans",)  # the only kind of pants this taxonomy knows
    assert pants.allowed["masterCategory"] == ("Apparel",) and "baseColour" not in pants.allowed
    assert pants.kind == "photo" and pants.group.startswith("sender:")


def test_street_crops_are_the_garment_regions_of_each_label(tmp_path, taxonomy):
    root = write_ccp(tmp_path / "ccp", count=2)
    crops = read_street_crops(root, LabelMap.load(LABEL_MAPS / "clothing-co-parsing.json"), taxonomy, min_side=8)
    per_photo = sorted(r.source_label for r in crops if r.group == "photo:1")
    # hair, skin and the 2-pixel ring are not garments; blouse and vest stay apart (own labels), and
    # this small taxonomy has no articleType a blouse allows, so blouses are skipped.
    assert per_photo == ["jeans", "shoes", "sneakers", "vest"]
    jeans = next(r for r in crops if r.source_label == "jeans" and r.group == "photo:1")
    x1, y1, x2, y2 = jeans.box  # region 35..85 x 70..130, grown by 10% for context
    assert (x1, y1, x2, y2) == (30, 64, 90, 136)
    assert jeans.allowed["articleType"] == ("Jeans",)
    split_file = tmp_path / "split.json"
    split_file.write_text(json.dumps({"train": [1], "val": [2]}))
    split = split_street_crops(crops, split_file)
    assert {r.group for r in crops if r.id in split["val"]} == {"photo:2"}


def test_training_street_crops_can_be_cut_wider_and_held_out_crops_never_are(tmp_path):
    catalogue = read_catalogue(make_catalogue(tmp_path / "c", n=24)).records
    taxonomy = Taxonomy.from_records(catalogue)
    root = write_ccp(tmp_path / "ccp", count=2)
    split_file = tmp_path / "split.json"
    split_file.write_text(json.dumps({"train": [1], "val": [2]}))
    label_map = LABEL_MAPS / "clothing-co-parsing.json"
    narrow, narrow_split = read_sources(catalogue, taxonomy, street=root, street_label_map=label_map,
                                        street_split=split_file)
    wide, wide_split = read_sources(catalogue, taxonomy, street=root, street_label_map=label_map,
                                    street_split=split_file, street_train_margin=0.3)
    assert wide_split == narrow_split
    before = {r.id: r for r in narrow["street"]}
    train = set(wide_split["street"]["train"])
    assert train and wide_split["street"]["val"]
    for record in wide["street"]:
        x1, y1, x2, y2 = before[record.id].box
        if record.id in train:  # the same garment with more of the photo around it
            a1, b1, a2, b2 = record.box
            assert a1 <= x1 and b1 <= y1 and a2 >= x2 and b2 >= y2 and (a2 - a1) * (b2 - b1) > (x2 - x1) * (y2 - y1)
            assert (record.allowed, record.source_label) == (before[record.id].allowed, before[record.id].source_label)
        else:  # held out: cut as the pipeline cuts detections
            assert record.box == (x1, y1, x2, y2)
    jeans = next(r for r in wide["street"] if r.source_label == "jeans" and r.group == "photo:1")
    assert jeans.box == (20, 52, 100, 148)  # region 35..85 x 70..130, grown by 30%


def test_random_crops_of_wider_street_crops_still_reach_the_garment_box():
    assert PhotoAugmenter((64, 48)).street_min_area == pytest.approx(0.75)
    wide = PhotoAugmenter((64, 48), street_margin=0.25)
    # The tightest crop of a crop with 25% of context is as tight as one of a crop with 10%.
    assert wide.street_min_area * (1 + 2 * 0.25) ** 2 == pytest.approx(0.75 * (1 + 2 * 0.1) ** 2)


def test_background_mask_is_the_white_connected_to_the_border():
    image = np.full((40, 30, 3), 255, np.uint8)
    image[10:30, 5:25] = (200, 30, 30)  # the product
    image[15:25, 10:20] = 255  # white inside the product (a print) is not background
    mask = background_mask(image)
    assert mask[0, 0] and mask[39, 29] and not mask[20, 15] and not mask[12, 12]


def test_augmenter_returns_model_sized_images_for_every_kind():
    rng = np.random.default_rng(0)
    backgrounds = [rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)]
    augmenter = PhotoAugmenter((64, 48), backgrounds, seed=3, background_probability=1.0)
    thumbnail = np.full((80, 60, 3), 255, np.uint8)
    thumbnail[20:60, 15:45] = (20, 20, 200)
    outputs = [augmenter(thumbnail, "catalogue") for _ in range(8)]
    for kind in ("photo", "street"):
        outputs.append(augmenter(rng.integers(0, 255, (150, 100, 3), dtype=np.uint8), kind))
    assert all(o.shape == (64, 48, 3) and o.dtype == np.uint8 for o in outputs)
    # With the background always replaced, thumbnails stop being mostly white.
    assert np.mean([(o >= 250).all(axis=2).mean() for o in outputs[:8]]) < 0.3


def test_light_catalogue_augmentation_keeps_the_white_and_the_product():
    rng = np.random.default_rng(0)
    backgrounds = [rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)]
    augmenter = PhotoAugmenter((64, 48), backgrounds, seed=3, background_probability=1.0, catalogue_light=True)
    thumbnail = np.full((80, 60, 3), 255, np.uint8)
    thumbnail[20:60, 15:45] = (20, 20, 200)
    outputs = [augmenter(thumbnail, "catalogue") for _ in range(8)]
    assert all(o.shape == (64, 48, 3) and o.dtype == np.uint8 for o in outputs)
    # No background replaced, no colour jitter: still mostly white, the product's blue as it was.
    assert np.mean([(o >= 250).all(axis=2).mean() for o in outputs]) > 0.5
    assert all(((np.abs(o.astype(int) - (20, 20, 200)) <= 2).all(axis=2)).any() for o in outputs)
    # Photos are still made to look like other photos.
    photo = rng.integers(0, 255, (150, 100, 3), dtype=np.uint8)
    assert augmenter(photo, "photo").shape == (64, 48, 3)


def test_held_out_leaks_counts_the_earlier_held_out_ids_a_split_trains_on():
    earlier = {"train": ["a", "b"], "val": ["c"], "test": ["d", "e"],
               "photo": {"train": ["p1"], "val": ["p2", "p3"]}, "street": {"train": ["s1"], "val": ["s2"]}}
    assert held_out_leaks(earlier, earlier) == {}
    # The catalogue's earlier val may be trained on (it only scored epochs); its test never.
    reshuffled = {"train": ["a", "c", "d"], "val": ["b"], "test": ["e"],
                  "photo": {"train": ["p1", "p2", "p3"], "val": []}, "street": {"train": ["s1"], "val": ["s2"]}}
    assert held_out_leaks(reshuffled, earlier) == {"catalogue": 1, "photo": 2}
    catalogue_only = {"train": ["a", "b", "c"], "val": [], "test": ["d", "e"]}
    assert held_out_leaks(catalogue_only, earlier) == {}  # kinds one run did not use are not compared
