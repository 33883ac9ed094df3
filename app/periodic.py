"""A daemon thread that does one piece of work every few seconds, for as long as its process serves."""
from __future__ import annotations

import logging
import threading
from typing import Callable

log = logging.getLogger(__name__)


class PeriodicThread:
    """Calls `work` every `interval` seconds once started (never, for an interval of 0). An exception (a
    database or broker outage) is logged and the next turn tries again: the thread outlives outages."""

    def __init__(self, name: str, interval: float, work: Callable[[], object]):
        self.name, self.interval, self.work = name, interval, work
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None and self.interval > 0:
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stopped.wait(self.interval):
            try:
                self.work()
            except Exception:  # noqa: BLE001 - an outage: try again next turn
                log.warning("%s failed; trying again in %s s", self.name, self.interval, exc_info=True)
