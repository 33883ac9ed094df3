"""How far a tag's confidence can be trusted, measured on held-out images.

A user keeps a tag or sends it to a person by its confidence (`/v1/items?min_confidence=`), so the
evaluation says, for each kind of image and task, how often a tag given with at least a confidence is
right and how many images get one that high, and how close confidence and accuracy are overall
(expected calibration error over equal-width bins, with the bins for a reliability diagram).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

MIN_CONFIDENCES = (0.5, 0.7, 0.8, 0.9, 0.95)
RELIABILITY_BINS = 10


def threshold_table(confidence: np.ndarray, hits: np.ndarray,
                    min_confidences: Sequence[float] = MIN_CONFIDENCES) -> list[dict]:
    """Per minimum confidence: `share` of the images whose tag is at least that sure, and `accuracy`
    among them (None when none is)."""
    confidence, hits = np.asarray(confidence, float), np.asarray(hits, bool)
    rows = []
    for minimum in min_confidences:
        kept = confidence >= minimum
        rows.append({"min_confidence": minimum, "images": int(kept.sum()),
                     "share": float(kept.mean()) if len(kept) else 0.0,
                     "accuracy": float(hits[kept].mean()) if kept.any() else None})
    return rows


def reliability(confidence: np.ndarray, hits: np.ndarray, bins: int = RELIABILITY_BINS) -> dict:
    """Equal-width confidence bins (the last one closed at 1) with their mean confidence and accuracy,
    and the expected calibration error: the images' share-weighted gap between the two."""
    confidence, hits = np.asarray(confidence, float), np.asarray(hits, bool)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    rows, error = [], 0.0
    for b in range(bins):
        inside = which == b
        if not inside.any():
            continue
        mean_confidence, accuracy = float(confidence[inside].mean()), float(hits[inside].mean())
        error += inside.mean() * abs(mean_confidence - accuracy)
        rows.append({"from": b / bins, "to": (b + 1) / bins, "images": int(inside.sum()),
                     "mean_confidence": mean_confidence, "accuracy": accuracy})
    return {"expected_calibration_error": float(error) if len(confidence) else None, "bins": rows}


def confidence_report(confidence: np.ndarray, hits: np.ndarray) -> dict:
    """What the evaluation keeps per kind and task: the mean confidence beside the accuracy, the
    calibration error, the reliability bins and the table of minimum confidences."""
    confidence, hits = np.asarray(confidence, float), np.asarray(hits, bool)
    return {"images": int(len(confidence)),
            "mean_confidence": float(confidence.mean()) if len(confidence) else None,
            "accuracy": float(hits.mean()) if len(hits) else None,
            **reliability(confidence, hits), "thresholds": threshold_table(confidence, hits)}


def confidence_summary(report: dict) -> dict:
    """The manifest's compact form: calibration error and, per minimum confidence, [share, accuracy]."""
    return {"expected_calibration_error": _rounded(report["expected_calibration_error"]),
            "min_confidence": {f"{row['min_confidence']:g}": [_rounded(row["share"]), _rounded(row["accuracy"])]
                               for row in report["thresholds"]}}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
