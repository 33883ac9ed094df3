"""The background loop behind change delivery and the stall watch."""
import threading
import time

from app.periodic import PeriodicThread


def test_the_thread_outlives_a_failing_turn_and_stops_when_told():
    turns, twice = [], threading.Event()

    def work():
        turns.append(len(turns))
        if len(turns) == 1:
            raise ConnectionError("database away")  # an outage: logged, and the next turn comes anyway
        twice.set()

    thread = PeriodicThread("test-work", 0.01, work)
    thread.start()
    assert twice.wait(10)
    thread.stop()
    stopped_at = len(turns)
    assert not thread._thread.is_alive()
    time.sleep(0.1)  # ten intervals
    assert len(turns) == stopped_at


def test_an_interval_of_zero_never_starts():
    thread = PeriodicThread("off", 0, lambda: None)
    thread.start()
    assert thread._thread is None
