"""A phone photo's own category pooled with its one garment's reading, on the images the kind gate names."""
import numpy as np
import pytest

from classification.garment_context import POOLED_TASKS, GarmentContext, pooled
from classification.product_garment import ProductGarment


def kept_all(rows_of):
    return lambda row, kind: rows_of[row]


def test_parse_and_name_follow_the_garment_context():
    served = ProductGarment.parse("log:0.35", "photo")
    assert isinstance(served, ProductGarment) and served.name == "log:0.35/photo"
    assert ProductGarment.parse("off").pooling == "off"
    with pytest.raises(ValueError):
        ProductGarment.parse("log:0")


def test_each_phone_photo_with_exactly_one_kept_garment_is_paired_with_it():
    rule = ProductGarment.parse("log:0.35", "photo")
    # four images: a photo with one garment, a photo with two, a street photo with one, a photo with none
    whole_image_rows = [0, 0, 2, 2, 2, 5, 5, 7]
    read = ["photo", "photo", "photo", "photo", "photo", "street", "street", "photo"]
    rows_of = {0: [1], 2: [3, 4], 5: [6], 7: []}
    assert rule.pairs(read, whole_image_rows, kept_all(rows_of)) == {0: 1}
    # what the pipeline keeps decides: the second photo's other garment a fragment, it is paired too
    assert rule.pairs(read, whole_image_rows, kept_all(rows_of | {2: [3]})) == {0: 1, 2: 3}
    assert ProductGarment.parse("log:0.35", "all").pairs(read, whole_image_rows, kept_all(rows_of)) == {0: 1, 5: 6}
    # nothing to pair without a gate, the rows, the kept garments, or with the rule off
    assert rule.pairs(None, whole_image_rows, kept_all(rows_of)) == {}
    assert rule.pairs(read, None, kept_all(rows_of)) == {}
    assert rule.pairs(read, whole_image_rows, None) == {}
    assert ProductGarment.parse("off").pairs(read, whole_image_rows, kept_all(rows_of)) == {}


def test_both_directions_pool_each_row_with_the_others_own_reading():
    rng = np.random.default_rng(0)
    probs = {task: rng.dirichlet(np.ones(4), size=3).astype(np.float32) for task in POOLED_TASKS}
    probs["baseColour"] = rng.dirichlet(np.ones(5), size=3).astype(np.float32)
    context, product = GarmentContext.parse("log:0.35"), ProductGarment.parse("linear:0.5")
    garments_pooled = context.pool_pairs(probs, {1: 0})  # the garment (row 1) with its image (row 0)
    both = product.pool_pairs(garments_pooled, {0: 1}, source=probs)  # the image with its garment's own reading
    for task in POOLED_TASKS:
        np.testing.assert_allclose(both[task][1], pooled(probs[task][1:2], probs[task][0:1], 0.35, "log")[0], rtol=1e-5)
        np.testing.assert_allclose(both[task][0], 0.5 * probs[task][0] + 0.5 * probs[task][1], rtol=1e-5)
        np.testing.assert_array_equal(both[task][2], probs[task][2])  # a row in no pair: as it was
    np.testing.assert_array_equal(both["baseColour"], probs["baseColour"])  # style tasks: their own
    assert context.pool_pairs(probs, {}) == probs
