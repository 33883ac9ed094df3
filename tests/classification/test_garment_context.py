"""A garment's category pooled with its whole image's, on the images the kind gate names."""
import numpy as np
import pytest

from classification.garment_context import POOLED_TASKS, GarmentContext, pooled


def test_parse_and_name():
    assert GarmentContext.parse("off").pooling == "off" and GarmentContext.parse("off").name == "off"
    served = GarmentContext.parse("log:0.35")
    assert (served.pooling, served.weight, served.kinds, served.name) == ("log", 0.35, frozenset({"photo"}),
                                                                          "log:0.35/photo")
    assert GarmentContext.parse("LINEAR:1", "all").name == "linear:1"
    assert GarmentContext.parse("log:0.5", "photo,catalogue").name == "log:0.5/catalogue+photo"
    for bad in ("log", "log:0", "log:1.5", "mean:0.3", "log:x"):
        with pytest.raises(ValueError):
            GarmentContext.parse(bad)
    with pytest.raises(ValueError):
        GarmentContext.parse("log:0.3", "people")


def test_pooling_ends_and_a_sure_garment_keeps_its_reading():
    own = np.array([[0.9, 0.08, 0.02]], np.float32)
    whole = np.array([[0.02, 0.08, 0.9]], np.float32)
    for pooling in ("log", "linear"):
        np.testing.assert_allclose(pooled(own, whole, 0.0, pooling), own, rtol=1e-5)
        np.testing.assert_allclose(pooled(own, whole, 1.0, pooling), whole, rtol=1e-5)
        assert pooled(own, whole, 0.35, pooling).sum() == pytest.approx(1.0, abs=1e-5)
    # Half way, log pooling leaves a sure garment its class where linear pooling hands it to the whole
    # image (a photo of two garments: each keeps its own); an unsure one leans to the whole image in both.
    assert pooled(own, whole, 0.5, "log").argmax() == 0
    unsure = np.array([[0.4, 0.35, 0.25]], np.float32)
    assert pooled(unsure, whole, 0.5, "log").argmax() == 2 and pooled(unsure, whole, 0.5, "linear").argmax() == 2


def probs(rows):
    rng = np.random.default_rng(0)
    out = {}
    for task, classes in (("gender", 3), ("masterCategory", 2), ("subCategory", 4), ("articleType", 5),
                          ("baseColour", 4)):
        p = rng.random((rows, classes)).astype(np.float32)
        out[task] = p / p.sum(axis=1, keepdims=True)
    return out


def test_only_the_garments_of_images_read_as_the_kinds_pool_and_never_a_whole_image():
    # Two images: rows 0-2 a phone photo and its two garments, rows 3-4 a street photo and one garment.
    p = probs(5)
    rows = [0, 0, 0, 3, 3]
    out = GarmentContext.parse("linear:0.5").apply(p, ["photo", "street", "street", "street", "photo"], rows)
    for task in POOLED_TASKS:
        np.testing.assert_allclose(out[task][[0, 3, 4]], p[task][[0, 3, 4]])  # wholes, and the street garment
        np.testing.assert_allclose(out[task][1:3], 0.5 * p[task][1:3] + 0.5 * p[task][:1], rtol=1e-6)
    np.testing.assert_array_equal(out["baseColour"], p["baseColour"])  # the garment's own colour
    everywhere = GarmentContext.parse("linear:0.5", "all").apply(p, ["photo", "x", "x", "street", "x"], rows)
    np.testing.assert_allclose(everywhere["articleType"][4], 0.5 * p["articleType"][4] + 0.5 * p["articleType"][3])
    # Nothing to pool: off, no rows of whole images, or no gate.
    for context, read, whole_rows in ((GarmentContext(), ["photo"] * 5, rows),
                                      (GarmentContext.parse("log:0.5"), ["photo"] * 5, None),
                                      (GarmentContext.parse("log:0.5"), None, rows)):
        out = context.apply(p, read, whole_rows)
        assert all(np.array_equal(out[t], p[t]) for t in p)
