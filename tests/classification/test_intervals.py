import numpy as np
import pytest

from classification.intervals import LEVEL, accuracy_interval, mean_over_labels_interval


def test_accuracy_interval_holds_the_figure_and_narrows_with_more_images():
    rng = np.random.default_rng(0)
    small, large = rng.random(100) < 0.8, rng.random(10_000) < 0.8
    for hits in (small, large):
        low, high = accuracy_interval(hits)
        assert low < hits.mean() < high
    assert np.diff(accuracy_interval(large))[0] < np.diff(accuracy_interval(small))[0] / 5
    # the normal approximation's half-width for 10,000 images at 0.8: 1.96 * sqrt(0.8 * 0.2 / 10,000)
    assert np.diff(accuracy_interval(large))[0] / 2 == pytest.approx(1.96 * np.sqrt(0.16 / 10_000), rel=0.15)
    assert accuracy_interval(np.ones(7)) == [1.0, 1.0]


def test_mean_over_labels_resamples_each_label_within_itself():
    # A label of one image keeps its outcome and a label whose images all agree cannot move: the mean
    # over labels is then fixed, although over images it would vary.
    hits = np.r_[np.ones(50), 0.0]
    labels = ["often"] * 50 + ["once"]
    assert mean_over_labels_interval(hits, labels) == [0.5, 0.5]
    # Against a direct stratified bootstrap: a small label's share weighs as much as a large one's.
    rng = np.random.default_rng(1)
    hits = np.r_[rng.random(400) < 0.9, rng.random(8) < 0.5, [1.0]]
    labels = np.array(["big"] * 400 + ["small"] * 8 + ["single"])
    draws = [np.mean([rng.choice(hits[labels == name], (labels == name).sum()).mean() for name in ("big", "small", "single")])
             for _ in range(3000)]
    expected = np.quantile(draws, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    np.testing.assert_allclose(mean_over_labels_interval(hits, labels), expected, atol=0.02)
    low, high = mean_over_labels_interval(hits, labels)
    assert high - low > np.diff(accuracy_interval(hits))[0]  # the 8-image label dominates the spread
