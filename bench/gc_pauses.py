"""Garbage-collector pauses in a serving process, with the objects alive after model loading frozen
(`GC_FREEZE`, the default: app/gc_freeze.py) and without.

    nice -n 15 .venv/bin/python bench/gc_pauses.py [--rounds 4] [--analyses 5000]

One process as a gunicorn worker is: the app with its models loaded and warmed up through the pipeline
holder (so the freeze runs where a worker runs it), on a SQLite database holding `--analyses` analyses
of 4 items each. Each round serves, through the app's test client, 20 pages of `GET /v1/changes`
(100 entries with their analyses), 20 pages of `GET /v1/items?limit=100` and 4 uploads of a street photo
(`POST /v1/analyses`, refresh: the models run); rounds alternate frozen / not frozen (`gc.unfreeze`),
so the machine's drift hits both. Timed: every request, and every collection (gc.callbacks), by
generation. Writes bench/results/gc-pauses-<time>.json.
"""
from __future__ import annotations

import argparse
import gc
import io
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402,F401  (before TensorFlow)
import torchvision  # noqa: E402,F401
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from app import create_app  # noqa: E402
from app.config import Settings  # noqa: E402
from app.db import make_engine, upgrade  # noqa: E402
from app.gc_freeze import freeze_long_lived  # noqa: E402
from bench.changes_feed import fill  # noqa: E402
from bench.results import write_report  # noqa: E402

PHOTOS = ROOT.parent / "shared" / "datasets" / "clothing-co-parsing" / "photos"


class CollectionTimer:
    """Every collection's generation and duration, from the collector's own start/stop callbacks."""

    def __init__(self):
        self.pauses: list[tuple[int, float]] = []
        self._started = 0.0

    def __call__(self, phase, info):
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((info["generation"], time.perf_counter() - self._started))


def percentiles(seconds: list[float]) -> dict:
    values = np.array(seconds) * 1000
    return {"requests": len(values), "p50_ms": round(float(np.median(values)), 1),
            "p90_ms": round(float(np.percentile(values, 90)), 1), "p99_ms": round(float(np.percentile(values, 99)), 1),
            "max_ms": round(float(values.max()), 1)}


def serve_round(client, photos: list[bytes], timings: dict) -> None:
    cursor = None
    for _ in range(20):
        start = time.perf_counter()
        page = client.get("/v1/changes", query_string={"limit": 100, **({"cursor": cursor} if cursor else {})}).json
        timings["GET /v1/changes (100, expanded)"].append(time.perf_counter() - start)
        cursor = page["next_cursor"]
    cursor = None
    for _ in range(20):
        start = time.perf_counter()
        page = client.get("/v1/items", query_string={"limit": 100, **({"cursor": cursor} if cursor else {})}).json
        timings["GET /v1/items (100)"].append(time.perf_counter() - start)
        cursor = page["next_cursor"]
    for photo in photos:
        start = time.perf_counter()
        response = client.post("/v1/analyses", data={"image": (io.BytesIO(photo), "street.jpg"), "refresh": "true"},
                               content_type="multipart/form-data")
        assert response.status_code in (200, 201), response.json
        timings["POST /v1/analyses (street photo, models run)"].append(time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4, help="rounds of each mode")
    parser.add_argument("--analyses", type=int, default=5000)
    args = parser.parse_args()
    photos = [path.read_bytes() for path in sorted(PHOTOS.glob("*.jpg"))[:4]]
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/bench.sqlite3"
        upgrade(url)
        fill(make_engine(url), args.analyses)
        app = create_app(Settings.from_env().replace(database_url=url, gc_freeze=True, preload_models=False,
                                                     similarity_build_at_start=False))
        app.extensions["pipeline"].load()  # as a worker loads: the freeze runs in on_loaded
        tracked = len(gc.get_objects())
        frozen_at_load = gc.get_freeze_count()
        client = app.test_client()
        serve_round(client, photos[:1], {k: [] for k in ("GET /v1/changes (100, expanded)", "GET /v1/items (100)",
                                                         "POST /v1/analyses (street photo, models run)")})  # warm
        timer = CollectionTimer()
        gc.callbacks.append(timer)
        results = {}
        for round_ in tqdm(range(2 * args.rounds), desc="rounds", unit="round"):
            mode = "frozen (served)" if round_ % 2 == 0 else "not frozen"
            if mode == "frozen (served)":
                freeze_long_lived()
            else:
                gc.unfreeze()
            result = results.setdefault(mode, {"timings": {}, "pauses": []})
            timings = result["timings"]
            for key in ("GET /v1/changes (100, expanded)", "GET /v1/items (100)", "POST /v1/analyses (street photo, models run)"):
                timings.setdefault(key, [])
            first = len(timer.pauses)
            serve_round(client, photos, timings)
            result["pauses"] += timer.pauses[first:]
        gc.callbacks.remove(timer)
    report = {"tracked objects after loading": tracked, "frozen at load": frozen_at_load, "rounds per mode": args.rounds,
              "analyses stored": args.analyses, "modes": {}}
    for mode, result in results.items():
        full = [seconds for generation, seconds in result["pauses"] if generation == 2]
        young = [seconds for generation, seconds in result["pauses"] if generation < 2]
        report["modes"][mode] = {
            "requests": {route: percentiles(seconds) for route, seconds in result["timings"].items()},
            "full collections": {"count": len(full), "total_ms": round(sum(full) * 1000, 1),
                                 "max_ms": round(max(full, default=0) * 1000, 1)},
            "young collections": {"count": len(young), "total_ms": round(sum(young) * 1000, 1),
                                  "max_ms": round(max(young, default=0) * 1000, 1)}}
        print(mode, report["modes"][mode], flush=True)
    write_report("gc-pauses", report)


if __name__ == "__main__":
    main()
