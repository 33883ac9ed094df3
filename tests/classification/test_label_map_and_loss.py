import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from classification.label_map import LabelMap, LabelMapError
from classification.losses import PartialLabelAccuracy, PartialLabelCrossEntropy
from classification.taxonomy import Taxonomy

from .catalogue_factory import make_catalogue


@pytest.fixture(scope="module")
def taxonomy(tmp_path_factory):
    from classification.catalogue import read_catalogue

    return Taxonomy.from_records(read_catalogue(make_catalogue(tmp_path_factory.mktemp("c"), n=24)).records)


def write_map(path, labels, ignore=()):
    path.write_text(json.dumps({"labels": labels, "ignore": list(ignore)}))
    return path


def test_label_map_resolves_levels_from_the_taxonomy_paths(taxonomy, tmp_path):
    label_map = LabelMap.load(write_map(tmp_path / "m.json", {
        "Pants": {"articleType": ["Jeans", "Track Pants"]},  # Track Pants is unknown to this taxonomy
        "Socks": {"masterCategory": ["Accessories"], "articleType": ["Socks"]},
        "Any socks": {"articleType": ["Socks"]},
    }, ignore=["Not sure"]))
    pants = label_map.allowed("Pants", taxonomy)
    assert pants == {"articleType": ("Jeans",), "masterCategory": ("Apparel",), "subCategory": ("Bottomwear",)}
    # Socks sit under two parents; a map may narrow the master, else both paths are allowed.
    assert label_map.allowed("Socks", taxonomy)["subCategory"] == ("Socks",)
    assert label_map.allowed("Socks", taxonomy)["masterCategory"] == ("Accessories",)
    assert label_map.allowed("Any socks", taxonomy)["masterCategory"] == ("Accessories", "Apparel")
    assert label_map.allowed("Not sure", taxonomy) is None
    with pytest.raises(LabelMapError, match="neither mapped nor ignored"):
        label_map.allowed("Spacesuit", taxonomy)


def test_label_map_refuses_what_cannot_be_resolved(taxonomy, tmp_path):
    with pytest.raises(LabelMapError, match="unknown tasks"):
        LabelMap.load(write_map(tmp_path / "a.json", {"X": {"colour": ["Red"]}}))
    bad = LabelMap.load(write_map(tmp_path / "b.json", {"X": {"articleType": ["Spacesuits"]}}))
    with pytest.raises(LabelMapError, match="none of"):
        bad.allowed("X", taxonomy)
    contradictory = LabelMap.load(write_map(tmp_path / "c.json", {"X": {"masterCategory": ["Footwear"],
                                                                        "articleType": ["Jeans"]}}))
    with pytest.raises(LabelMapError, match="no path"):
        contradictory.allowed("X", taxonomy)


def test_shipped_label_maps_resolve_every_label_against_the_real_catalogue(shared_datasets):
    from classification.catalogue import read_catalogue
    from classification.sources import LABEL_MAPS

    taxonomy = Taxonomy.from_records(read_catalogue(shared_datasets / "fashion-product-images-small").records)
    for path in LABEL_MAPS.glob("*.json"):
        label_map = LabelMap.load(path)
        for label in label_map.labels:
            allowed = label_map.allowed(label, taxonomy)
            for level, names in allowed.items():
                assert all(taxonomy.index(level, n) >= 0 for n in names), (path.name, label, level)
            paths = {p for p in taxonomy.paths if p[2] in allowed["articleType"]}
            assert any(p[0] in allowed["masterCategory"] and p[1] in allowed["subCategory"] for p in paths)


def loss_of(probs, allowed):
    return np.asarray(PartialLabelCrossEntropy(reduction=None)(np.asarray(allowed, np.float32),
                                                               np.asarray(probs, np.float32)))


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 8).flatmap(lambda n: st.tuples(
    st.lists(st.floats(0.01, 10.0), min_size=n, max_size=n),
    st.lists(st.booleans(), min_size=n, max_size=n).filter(any))))
def test_partial_label_loss_is_minus_log_of_the_allowed_mass_and_minimal_inside_the_set(case):
    weights, allowed = case
    probs = np.asarray(weights) / np.sum(weights)
    mask = np.asarray(allowed, np.float32)
    loss = float(loss_of([probs], [mask])[0])
    assert loss == pytest.approx(-np.log(probs[mask > 0].sum()), rel=1e-4, abs=1e-5)
    # All the mass inside the allowed set, however it is spread there, is the minimum: zero.
    inside = np.where(mask > 0, probs + 1e-3, 0.0)
    assert float(loss_of([inside / inside.sum()], [mask])[0]) == pytest.approx(0.0, abs=1e-5)
    assert loss >= -1e-6


def test_partial_label_loss_is_cross_entropy_for_one_label_and_ignores_unknown_rows():
    probs = np.asarray([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], np.float32)
    losses = loss_of(probs, [[0, 1, 0], [0, 0, 0]])
    assert losses[0] == pytest.approx(-np.log(0.2), rel=1e-5)
    assert losses[1] == 0.0


def test_partial_label_accuracy_counts_a_top_class_inside_the_set():
    metric = PartialLabelAccuracy()
    metric.update_state(np.asarray([[1, 1, 0], [0, 0, 1], [0, 0, 0]], np.float32),
                        np.asarray([[0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.9, 0.05, 0.05]], np.float32))
    assert float(metric.result()) == pytest.approx(0.5)  # the third row says nothing and is not counted
