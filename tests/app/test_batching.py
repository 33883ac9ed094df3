"""Cross-request batching: callers get their own results, batches are bounded, a bad image fails
only its own caller, and the real pipeline gives the same items batched or not."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from app.batching import RequestBatcher
from app.pipeline import Pipeline


class RecordingModel:
    """A model call that takes a while (so callers pile up) and returns each image's first pixel."""

    def __init__(self, seconds: float = 0.05):
        self.seconds, self.batch_sizes, self.lock = seconds, [], threading.Lock()

    def __call__(self, images, timings):
        if any(image[0, 0, 0] == 255 for image in images):
            raise ValueError("poisoned image")
        with self.lock:
            self.batch_sizes.append(len(images))
        time.sleep(self.seconds)
        timings["detect"] = 10.0 * len(images)
        return [int(image[0, 0, 0]) for image in images]


def image(value: int) -> np.ndarray:
    return np.full((4, 4, 3), value, dtype=np.uint8)


def test_concurrent_callers_share_batches_and_get_their_own_results():
    model = RecordingModel()
    batcher = RequestBatcher(model, max_images=4, max_wait=0.02)

    def call(value):
        timings = {}
        return batcher.submit([image(value)], timings), timings

    with ThreadPoolExecutor(12) as pool:
        outcomes = list(pool.map(call, range(12)))
    assert [results for results, _ in outcomes] == [[v] for v in range(12)]
    assert sum(model.batch_sizes) == 12 and max(model.batch_sizes) <= 4
    assert len(model.batch_sizes) < 12  # some calls really were merged
    # Each caller is charged its share of the batch's stage time, and told how long it queued.
    assert all(t["detect"] == 10.0 and t["queue"] >= 0 for _, t in outcomes)


def test_a_multi_image_submission_stays_together_in_order():
    batcher = RequestBatcher(RecordingModel(0), max_images=8, max_wait=0.0)
    assert batcher.submit([image(3), image(1), image(2)], {}) == [3, 1, 2]


def test_a_bad_image_fails_only_its_own_caller():
    model = RecordingModel()
    batcher = RequestBatcher(model, max_images=8, max_wait=0.05)
    start = threading.Barrier(4)

    def call(value):
        start.wait()
        try:
            return batcher.submit([image(value)], {})
        except ValueError as error:
            return str(error)

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(call, [1, 2, 255, 4]))
    assert outcomes == [[1], [2], "poisoned image", [4]]


def test_a_lone_caller_waits_at_most_the_bounded_time():
    batcher = RequestBatcher(RecordingModel(0), max_images=8, max_wait=0.05)
    timings = {}
    batcher.submit([image(1)], timings)
    assert timings["queue"] < 1000  # generous: the wait is bounded, not "until 8 images arrive"


def test_the_dispatcher_survives_an_error_and_keeps_serving():
    batcher = RequestBatcher(RecordingModel(0), max_images=2, max_wait=0.0)
    with pytest.raises(ValueError):
        batcher.submit([image(255)], {})
    assert batcher.submit([image(7)], {}) == [7]


def test_the_real_pipeline_gives_the_same_items_batched_or_not(pipeline):
    batched = Pipeline(pipeline.detector, pipeline.classifier, batch_max_images=4, batch_max_wait=0.05)
    rng = np.random.default_rng(0)
    photos = [rng.integers(0, 256, (96, 64, 3), dtype=np.uint8) for _ in range(4)]
    alone = [pipeline.analyse(photo, {}) for photo in photos]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda photo: batched.analyse(photo, {}), photos))
    assert batched.batcher.batches_run < 4
    for one, other in zip(alone, together):
        assert tags(one) == tags(other)  # same labels; confidences equal up to batch-size float noise
        assert np.allclose(confidences(one), confidences(other), atol=1e-3)


def tags(items):
    return [{task: tag["label"] for task, tag in (i["category"] | i["style"]).items() if isinstance(tag, dict)}
            for i in items]  # the task entries; path_confidence and constrained_by are not tasks


def confidences(items):
    return [tag["confidence"] for i in items for tag in (i["category"] | i["style"]).values() if isinstance(tag, dict)]
