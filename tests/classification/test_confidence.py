import numpy as np
import pytest

from classification.confidence import confidence_report, confidence_summary, reliability, threshold_table


def test_the_table_keeps_the_tags_at_least_that_sure_and_their_accuracy():
    confidence = np.array([0.95, 0.92, 0.9, 0.75, 0.6, 0.4])
    hits = np.array([1, 1, 0, 1, 0, 0], bool)
    rows = {row["min_confidence"]: row for row in threshold_table(confidence, hits, (0.5, 0.9, 0.99))}
    assert rows[0.9] == {"min_confidence": 0.9, "images": 3, "share": 0.5, "accuracy": pytest.approx(2 / 3)}
    assert rows[0.5]["images"] == 5 and rows[0.5]["accuracy"] == pytest.approx(3 / 5)
    assert rows[0.99] == {"min_confidence": 0.99, "images": 0, "share": 0.0, "accuracy": None}


def test_a_confidence_that_means_what_it_says_has_no_calibration_error():
    # Two bins, each right exactly as often as its confidence says.
    confidence = np.array([0.25] * 4 + [0.75] * 4)
    hits = np.array([1, 0, 0, 0, 1, 1, 1, 0], bool)
    result = reliability(confidence, hits, bins=4)
    assert result["expected_calibration_error"] == pytest.approx(0.0)
    assert [(b["from"], b["images"], b["accuracy"]) for b in result["bins"]] == [(0.25, 4, 0.25), (0.75, 4, 0.75)]


def test_overconfidence_is_the_share_weighted_gap():
    # Half the images sure at 0.9 and right half the time, half at 0.3 and never right.
    confidence = np.array([0.9, 0.9, 0.3, 0.3])
    hits = np.array([1, 0, 0, 0], bool)
    result = reliability(confidence, hits)
    assert result["expected_calibration_error"] == pytest.approx(0.5 * 0.4 + 0.5 * 0.3)
    # A confidence of exactly 1 falls in the last bin, not past it.
    assert reliability(np.array([1.0]), np.array([True]))["bins"][-1]["to"] == 1.0


def test_the_manifest_form_is_compact_and_readable():
    report = confidence_report(np.array([0.99, 0.8, 0.55]), np.array([1, 1, 0], bool))
    assert report["images"] == 3 and report["accuracy"] == pytest.approx(2 / 3)
    assert report["mean_confidence"] == pytest.approx((0.99 + 0.8 + 0.55) / 3)
    summary = confidence_summary(report)
    assert summary["min_confidence"]["0.8"] == [0.6667, 1.0]
    assert summary["min_confidence"]["0.95"] == [0.3333, 1.0]
    assert 0 <= summary["expected_calibration_error"] <= 1
