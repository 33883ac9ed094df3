from pathlib import Path

import numpy as np
import pytest

from classification.data import MixedBatches, label_balance_weights
from classification.records import LabelledImage
from classification.taxonomy import TASKS


def records(kind: str, label: str, count: int) -> list[LabelledImage]:
    return [LabelledImage(f"{kind}-{label}-{i}", Path("unused.jpg"), kind, {}, source_label=label) for i in range(count)]


def test_label_balance_weights_divide_by_a_power_of_each_labels_count_within_its_kind():
    table = records("street", "shoes", 16) + records("street", "scarf", 4) + records("photo", "shoes", 1) \
        + records("catalogue", "Tshirts", 9)
    weights = label_balance_weights(table, 0.5)
    assert np.allclose(weights[:16], 1 / 4) and np.allclose(weights[16:20], 1 / 2)
    assert weights[20] == 1.0  # a label is counted within its own kind
    assert np.allclose(weights[21:], 1.0)  # catalogue rows keep their natural frequencies
    assert np.allclose(label_balance_weights(table, 0.0), 1.0)


def batches(table, per_epoch, draw_weights=None, seed=0):
    images = [np.zeros((8, 6, 3), np.uint8)] * len(table)
    labels = {task: np.zeros((len(table), 2), np.uint8) for task in TASKS}
    return MixedBatches(images, labels, [r.kind for r in table], (8, 6), 16, per_epoch=per_epoch,
                        draw_weights=draw_weights, seed=seed)


@pytest.mark.parametrize("power, scarf_share", [(0.0, 0.1), (0.5, 0.25), (1.0, 0.5)])
def test_weighted_draws_give_rare_labels_their_share_and_leave_the_catalogue_alone(power, scarf_share):
    table = records("street", "shoes", 90) + records("street", "scarf", 10) + records("catalogue", "Tshirts", 30)
    data = batches(table, {"street": 4000, "catalogue": None}, label_balance_weights(table, power))
    drawn = [table[i] for i in data.order]
    street = [r for r in drawn if r.kind == "street"]
    assert len(street) == 4000
    # scarf: 10 * 10**-p against 90 * 90**-p of the weight (p=0.5: 0.25).
    assert abs(sum(r.source_label == "scarf" for r in street) / len(street) - scarf_share) < 0.03
    # Every catalogue row once, as without weights.
    assert sorted(r.id for r in drawn if r.kind == "catalogue") == sorted(r.id for r in table[100:])


def test_without_weights_each_record_is_drawn_once_an_epoch():
    table = records("street", "shoes", 9) + records("street", "scarf", 1)
    assert sorted(batches(table, None).order.tolist()) == list(range(10))
