"""How far a held-out figure could move with other images of the same kind: 95% bootstrap intervals.

The photo kinds' sets are small (1,100 phone photos over 16 labels, 798 street crops over 40), and their
headline figure is a mean over labels, where one photo of a 7-photo label is 0.009 of the figure. A figure
beside its interval says whether a change between two bundles, or the distance to a target, is larger
than what drawing other images of the same labels would do. Percentile bootstrap (scipy.stats.bootstrap);
a mean over labels resamples each label's images apart (the labels stay the labels, their images vary),
so a label is never dropped from, or doubled in, the mean.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.stats import bootstrap

LEVEL = 0.95
RESAMPLES = 2000
SEED = 1234


def interval_name(figure: str) -> str:
    """The key a report keeps `figure`'s interval under."""
    return f"{figure}_interval_95"


def _interval(samples: Sequence[np.ndarray], statistic) -> list[float]:
    # A constant sample (all hits, or one image) has no spread: its interval is the figure itself.
    if all(np.ptp(sample) == 0 for sample in samples):
        value = float(statistic(*samples, axis=-1))
        return [round(value, 4), round(value, 4)]
    result = bootstrap(tuple(samples), statistic, n_resamples=RESAMPLES, confidence_level=LEVEL,
                       method="percentile", vectorized=True, paired=False, random_state=SEED)
    return [round(float(result.confidence_interval.low), 4), round(float(result.confidence_interval.high), 4)]


def accuracy_interval(hits: np.ndarray) -> list[float]:
    """[low, high] of the share of hits, images drawn with replacement."""
    hits = np.asarray(hits, np.float64)
    if not len(hits):
        return [float("nan"), float("nan")]
    return _interval([hits], lambda sample, axis: sample.mean(axis=axis))


def mean_over_labels_interval(hits: np.ndarray, labels: Sequence[str]) -> list[float]:
    """[low, high] of the mean over labels of each label's share of hits, each label's images drawn
    with replacement from that label's own."""
    hits, labels = np.asarray(hits, np.float64), np.asarray(labels, dtype=object)
    if not len(hits):
        return [float("nan"), float("nan")]
    samples = [hits[labels == label] for label in sorted(set(labels.tolist()))]
    # scipy resamples samples of two images or more; a label with one image keeps its one outcome.
    varying = [sample for sample in samples if len(sample) >= 2]
    fixed = sum(float(sample[0]) for sample in samples if len(sample) < 2)

    def mean_of_means(*resampled, axis):
        return (np.sum([sample.mean(axis=axis) for sample in resampled], axis=0) + fixed) / len(samples)

    return _interval(varying, mean_of_means)  # no varying label: the fixed outcomes' mean, exactly
