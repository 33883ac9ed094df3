"""Cross-request batching: images from concurrent requests (and job batches) share one model call.

A dispatcher thread takes the first waiting submission, then keeps gathering others for at most
`max_wait` seconds or until `max_images` are collected, runs them as one batch and hands every caller
its own results. It only has something to gather when a process serves requests concurrently
(gunicorn WEB_THREADS > 1, or job batches beside API requests). Off by default (BATCH_MAX_IMAGES=1):
on the 2-core CPU, bench/pipeline.py measured a small gain that varies between runs (+4% to +26%
images/s with 2-4 concurrent clients) and once added latency for a lone client (docs/benchmarks.md).
On a GPU, where a batch costs little more than one image, the gain should be larger; that is not
measured yet.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Callable

import numpy as np

RunBatch = Callable[[list[np.ndarray], dict], list]


class _Submission:
    def __init__(self, images: list[np.ndarray]):
        self.images = images
        self.submitted = time.perf_counter()
        self.done = threading.Event()
        self.results: list | None = None
        self.timings: dict = {}
        self.error: BaseException | None = None


class RequestBatcher:
    def __init__(self, run_batch: RunBatch, max_images: int, max_wait: float):
        self.run_batch, self.max_images, self.max_wait = run_batch, max_images, max_wait
        self._queue: queue.Queue[_Submission] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.batches_run = 0

    def submit(self, images: list[np.ndarray], timings: dict) -> list:
        """Blocks until this caller's images have been analysed; returns their results in order."""
        self._ensure_dispatcher()
        submission = _Submission(images)
        self._queue.put(submission)
        submission.done.wait()
        timings.update(submission.timings)
        if submission.error is not None:
            raise submission.error
        return submission.results

    def _ensure_dispatcher(self) -> None:
        # Started on first use, so after gunicorn forks: a thread does not survive a fork.
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._dispatch, name="request-batcher", daemon=True)
                self._thread.start()

    def _gather(self) -> list[_Submission]:
        batch = [self._queue.get()]
        size = len(batch[0].images)
        deadline = time.perf_counter() + self.max_wait
        while size < self.max_images:
            remaining = deadline - time.perf_counter()
            try:
                submission = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            batch.append(submission)
            size += len(submission.images)
        return batch

    def _dispatch(self) -> None:
        while True:
            batch = self._gather()
            started = time.perf_counter()
            try:
                self._run(batch)
            except BaseException as error:  # noqa: BLE001 - one bad image must not fail its neighbours
                if len(batch) == 1:
                    batch[0].error = error
                else:
                    for submission in batch:  # run each alone: only the culprit gets the error
                        try:
                            self._run([submission])
                        except BaseException as own_error:  # noqa: BLE001
                            submission.error = own_error
            for submission in batch:
                submission.timings["queue"] = round((started - submission.submitted) * 1000, 2)
                submission.done.set()

    def _run(self, batch: list[_Submission]) -> None:
        images = [image for submission in batch for image in submission.images]
        stage_times: dict = {}
        results = self.run_batch(images, stage_times)
        self.batches_run += 1
        offset = 0
        for submission in batch:
            share = len(submission.images) / len(images)  # each caller is charged its share of the batch
            submission.results = results[offset: offset + len(submission.images)]
            submission.timings = {stage: round(ms * share, 2) for stage, ms in stage_times.items()}
            offset += len(submission.images)
