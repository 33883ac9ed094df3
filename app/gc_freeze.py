"""Keep the garbage collector off the objects a serving process holds for its whole life.

A worker with its models loaded tracks about 600,000 Python objects (torch, Keras, the bundles, the
libraries they import). Each full collection walks all of them: a pause of about 0.3 s on these cores,
landing in whichever request made the allocation that triggered it (bench/gc_pauses.py). Those objects
live as long as the process, so once the models have loaded they are moved to the permanent generation
(`gc.freeze`), after one collection so that start-up garbage is not kept with them. Objects made later,
by requests, are collected as before; anything frozen that is dropped later is still freed by reference
counting, only cycles among them stay (a few model reloads' worth at most: workers are recycled).
"""
from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


def freeze_long_lived() -> int:
    """Collect, then freeze every object alive; returns how many the collector now leaves alone."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("froze %d long-lived objects out of the garbage collector's passes", frozen)
    return frozen
