import numpy as np
import pytest

from classification.metrics import task_metrics


def test_per_class_figures_count_what_each_class_was_given():
    labels = ("a", "b", "c")
    true = np.array([0, 0, 0, 1, 1, -1, 2])
    pred = np.array([0, 0, 1, 1, 0, 2, 0])  # the unlabelled row (-1) is left out; c is never predicted
    probs = np.eye(3)[pred]
    metrics = task_metrics(true, pred, probs, labels)
    assert metrics["support"] == 6 and metrics["accuracy"] == pytest.approx(3 / 6)
    a, b, c = (metrics["per_class"][name] for name in labels)
    assert (a["support"], a["predicted"], a["precision"], a["recall"]) == (3, 4, 0.5, pytest.approx(2 / 3))
    assert (b["support"], b["predicted"], b["precision"], b["recall"]) == (2, 2, 0.5, 0.5)
    # never given: precision 0 by convention, which `predicted` tells apart from a tag always wrong
    assert (c["support"], c["predicted"], c["precision"], c["recall"]) == (1, 0, 0.0, 0.0)
