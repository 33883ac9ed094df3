"""The detector classes' allowed articleTypes, derived from detection/taxonomy.py and the CCP label map."""
import json
from pathlib import Path

import pytest

from classification.detector_prior import (DetectorPrior, allowed_article_types, allowed_paths, label_paths,
                                           parse_kinds)
from classification.label_map import LabelMap
from classification.taxonomy import Taxonomy
from detection.taxonomy import CCP_CLASSES, CCP_GROUPS

ROOT = Path(__file__).resolve().parents[2]
SERVED = ROOT / "models" / "fashion-lite0" / "manifest.json"
CCP_MAP = Path(__file__).resolve().parents[2] / "classification" / "label_maps" / "clothing-co-parsing.json"


@pytest.fixture(scope="module")
def served_taxonomy():
    return Taxonomy.from_dict(json.loads(SERVED.read_text())["taxonomy"])


def masters_of(paths):
    return {path[0] for path in paths}


def test_every_detector_class_is_constrained_within_the_served_taxonomy_or_explicitly_not(served_taxonomy):
    allowed = allowed_article_types(served_taxonomy)
    assert set(allowed) == set(CCP_CLASSES)
    for detector_class, types in allowed.items():
        if types is None:
            continue
        assert types and types <= set(served_taxonomy.labels["articleType"]), detector_class
    # `accessories` is too vague for the label map, so its class stays unconstrained.
    assert allowed["accessory"] is None
    assert sum(types is not None for types in allowed.values()) == len(CCP_CLASSES) - 1


def test_classes_allow_the_union_of_their_labels_and_nothing_of_other_master_categories(served_taxonomy):
    types, paths = allowed_article_types(served_taxonomy), allowed_paths(served_taxonomy)
    label_map = LabelMap.load(CCP_MAP)
    assert masters_of(paths["footwear"]) == {"Footwear"}
    assert masters_of(paths["bag"]) == {"Accessories"}  # Handbags also exist under Free Items: not allowed
    assert types["eyewear"] == {"Sunglasses"}
    assert types["skirt"] == {"Skirts"}
    assert "Shorts" not in types["footwear"] and "Shorts" in types["shorts"]
    for detector_class, members in CCP_GROUPS.items():
        if paths[detector_class] is None:
            continue
        assert paths[detector_class] <= set(served_taxonomy.paths)
        assert paths[detector_class] == set().union(*(label_paths(label_map.allowed(m, served_taxonomy), served_taxonomy)
                                                      for m in members))
        assert types[detector_class] == set().union(*(label_map.allowed(m, served_taxonomy)["articleType"]
                                                      for m in members))


def test_a_class_whose_labels_the_taxonomy_cannot_express_is_unconstrained():
    small = Taxonomy(labels={"masterCategory": ("Apparel", "Footwear"), "subCategory": ("Shoes", "Topwear"),
                             "articleType": ("Casual Shoes", "Tshirts")},
                     paths=(("Apparel", "Topwear", "Tshirts"), ("Footwear", "Shoes", "Casual Shoes")))
    allowed = allowed_article_types(small)
    assert allowed["bag"] is None  # no bag type at all
    assert allowed["footwear"] is None  # heels, sandals, ... have no type here: shoes would swallow them
    assert allowed_article_types(small, groups={"tees": ("t-shirt",)}) == {"tees": frozenset({"Tshirts"})}


def test_prior_settings_parse_and_apply_by_score(served_taxonomy):
    assert DetectorPrior.parse("off", served_taxonomy).for_detection("footwear", 0.99) is None
    hard = DetectorPrior.parse("hard", served_taxonomy, min_score=0.7)
    assert hard.weight == 0.0 and hard.name == "hard@0.7"
    assert hard.for_detection("footwear", 0.8) == allowed_paths(served_taxonomy)["footwear"]
    assert hard.for_detection("footwear", 0.6) is None  # weak evidence: not used
    assert hard.for_detection("accessory", 0.99) is None and hard.for_detection("not-a-class", 0.99) is None
    soft = DetectorPrior.parse("soft:0.001", served_taxonomy)
    assert (soft.mode, soft.weight, soft.name) == ("soft", 0.001, "soft:0.001")
    for bad in ("soft:0", "soft:1.5", "sometimes", "soft:x"):
        with pytest.raises(ValueError):
            DetectorPrior.parse(bad, served_taxonomy)


def test_the_kinds_of_garment_the_prior_constrains_are_named(served_taxonomy):
    street = DetectorPrior.parse("hard", served_taxonomy, kinds="street")
    assert street.kinds == frozenset({"street"}) and street.name == "hard/street"
    # the detection still allows its class's paths: which images' garments keep them, the kind gate reads
    assert street.for_detection("footwear", 0.8) == allowed_paths(served_taxonomy)["footwear"]
    both = DetectorPrior.parse("soft:0.01", served_taxonomy, 0.5, " Street, photo ")
    assert both.name == "soft:0.01@0.5/photo+street"
    assert DetectorPrior.parse("hard", served_taxonomy, kinds="all").kinds is None
    assert DetectorPrior.parse("off", served_taxonomy, kinds="street").name == "off"
    for bad in ("", "people", "street,people"):
        with pytest.raises(ValueError, match="kinds"):
            parse_kinds(bad)


def test_the_served_kind_gate_tells_street_photos_from_phone_photos(shared_datasets):
    # What GARMENT_DETECTOR_PRIOR_KINDS=street rests on: held-out street photos of people read as street,
    # held-out phone photos of one garment as photos (all of them: 126 of 128 and 1,093 of 1,100).
    import csv

    from classification.inference import Classifier
    from common.images import load_rgb

    bundle = SERVED.parent
    street_val = json.loads((ROOT / "models" / "ccp-maskrcnn-efflite0" / "split.json").read_text())["val"]
    photo_val = set(json.loads((bundle / "split.json").read_text())["photo"]["val"])
    with open(shared_datasets / "clothing-dataset" / "images.csv", newline="") as handle:
        phone = [row["image"] for row in csv.DictReader(handle) if row["image"] in photo_val]
    samples = {"street": [shared_datasets / "clothing-co-parsing" / "photos" / f"{int(i):04d}.jpg" for i in street_val[:16]],
               "photo": [shared_datasets / "clothing-dataset" / "images" / f"{i}.jpg" for i in phone[:16]]}
    classifier = Classifier(bundle)
    for kind, paths in samples.items():
        read = classifier.image_kinds(classifier.embedding_inputs([load_rgb(p) for p in paths])[0])
        assert sum(k == kind for k in read) >= 14, (kind, read)
