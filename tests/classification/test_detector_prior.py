"""The detector classes' allowed articleTypes, derived from detection/taxonomy.py and the CCP label map."""
import json
from pathlib import Path

import pytest

from classification.detector_prior import DetectorPrior, allowed_article_types, allowed_paths, label_paths
from classification.label_map import LabelMap
from classification.taxonomy import Taxonomy
from detection.taxonomy import CCP_CLASSES, CCP_GROUPS

SERVED = Path(__file__).resolve().parents[2] / "models" / "fashion-lite0" / "manifest.json"
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
