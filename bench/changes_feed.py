"""What the changes feed (app/changes.py, GET /v1/changes) costs: its entry in every stored analysis, and
reading it.

    nice -n 15 .venv/bin/python bench/changes_feed.py [--analyses 20000] [--database-url URL]

A fresh database (SQLite in a temporary folder unless --database-url names an empty PostgreSQL database,
whose tables are then emptied). Timed:
- writing: `save_analysis` of an image with 4 items (a whole image and 3 garments with masks), as the
  service stores one, with its feed entry and with the entry left out (the recorder replaced by a no-op),
  interleaved, 200 of each;
- reading: `--analyses` analyses of 4 items, each with its entry, walked from the start through the feed
  by pages of 100 and 500, with the analyses they carry (`expand`, the default) and ids only. Per page
  p50 / p99 and entries per second over the walk.
Writes bench/results/changes-feed-<time>.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402
from tqdm import tqdm  # noqa: E402

from app import changes  # noqa: E402
from app.models import TASK_COLUMNS, Analysis, Change, ImageRecord, Item  # noqa: E402
from app.store import save_analysis  # noqa: E402
from bench.databases import empty_database, move_sequences_past_given_ids  # noqa: E402
from bench.results import write_report  # noqa: E402

ITEMS = 4
# A garment mask as the service stores it: COCO RLE of a 640x480 photo's blob (about 500 characters).
MASK = {"size": [640, 480], "counts": "a" + "1b2c3d4" * 70}
TAG = {"label": "Tshirts", "confidence": 0.5, "top3": [{"label": "Tshirts", "confidence": 0.5}] * 3}


def pipeline_items() -> list[dict]:
    """The items of one analysis as the pipeline hands them to storage."""
    colours = [{"hex": "#aa3322", "name": "red", "share": 0.5}] * 3
    return [{"position": i, "kind": "garment" if i else "product", "box": [1.0, 2.0, 300.0, 400.0] if i else None,
             "mask": MASK if i else None, "detector": {"label": "top", "score": 0.9} if i else None,
             "category": {t: TAG for t in ("gender", "masterCategory", "subCategory", "articleType")} | {"path_confidence": 0.5},
             "style": {t: TAG for t in ("baseColour", "season", "usage")}, "colours": colours} for i in range(ITEMS)]


def fill(engine, count: int) -> None:
    """`count` analyses of their own image with ITEMS items each, and their feed entries (bulk inserts)."""
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    tags = {column: "Tshirts" for column, _ in TASK_COLUMNS.values()} | {c: 0.5 for _, c in TASK_COLUMNS.values()}
    with engine.begin() as connection:
        for start in tqdm(range(0, count, 2000), desc=f"filling {count} analyses", unit="chunk"):
            ids = range(start + 1, min(start + 2000, count) + 1)
            connection.execute(ImageRecord.__table__.insert(), [
                {"id": i, "sha256": f"{i:064x}", "width": 640, "height": 480} for i in ids])
            connection.execute(Analysis.__table__.insert(), [
                {"id": i, "image_id": i, "bundle_key": "k", "bundles": {"classifier": "x"}, "timings_ms": {"total": 1.0},
                 "source_url": f"https://shop.example/{i}.jpg", "created_at": now} for i in ids])
            connection.execute(Item.__table__.insert(), [
                {"analysis_id": i, "position": p, "kind": "garment" if p else "product", "mask": MASK if p else None,
                 "box": [1.0, 2.0, 300.0, 400.0] if p else None, "category_path_confidence": 0.5,
                 "top3": {t: TAG["top3"] for t in TASK_COLUMNS}, "colours": [{"hex": "#aa3322", "name": "red", "share": 0.5}],
                 **tags} for i in ids for p in range(ITEMS)])
            connection.execute(Change.__table__.insert(), [
                {"xid": 0, "type": "analysis.created", "image_id": i, "analysis_id": i, "detail": {"replaces": []},
                 "created_at": now} for i in ids])


def time_writes(engine, repeat: int) -> dict:
    """save_analysis with its feed entry and without, interleaved (the machine's drift hits both alike)."""
    real_record = changes.record
    seconds = {"with the entry": [], "without": []}
    items = pipeline_items()
    for n in tqdm(range(repeat), desc="timing writes", unit="pair"):
        for name in seconds:
            changes.record = real_record if name == "with the entry" else (lambda *args, **kwargs: None)
            with Session(engine, expire_on_commit=False) as session:
                start = time.perf_counter()
                save_analysis(session, sha256=f"{name[:4]}{n:060x}", width=640, height=480,
                              url=f"https://shop.example/w{n}.jpg", bundle_key="k", bundles={}, timings={},
                              items=items, refresh=False)
                seconds[name].append(time.perf_counter() - start)
    changes.record = real_record
    return {name: {"p50_ms": round(float(np.median(s)) * 1000, 2), "p99_ms": round(float(np.percentile(s, 99)) * 1000, 2)}
            for name, s in seconds.items()}


def walk(engine, limit: int, expand: bool) -> dict:
    seconds, entries, cursor = [], 0, None
    with Session(engine) as session:
        while True:
            start = time.perf_counter()
            page = changes.read_page(session, cursor, limit, expand)
            seconds.append(time.perf_counter() - start)
            session.rollback()  # each page its own transaction, as each request is
            entries += len(page["changes"])
            cursor = page["next_cursor"]
            if page["caught_up"]:
                break
    return {"page size": limit, "expand": expand, "entries": entries, "pages": len(seconds),
            "page p50_ms": round(float(np.median(seconds)) * 1000, 2),
            "page p99_ms": round(float(np.percentile(seconds, 99)) * 1000, 2),
            "entries per second": round(entries / sum(seconds))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--analyses", type=int, default=20_000)
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--database-url", help="an empty PostgreSQL database (default: SQLite in a temp folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        engine = empty_database(args.database_url, folder, "changes")
        fill(engine, args.analyses)
        move_sequences_past_given_ids(engine, ("images", "analyses"))
        reads = []
        for limit in (100, 500):
            for expand in (True, False):
                reads.append(walk(engine, limit, expand))
                print(reads[-1], flush=True)
        writes = time_writes(engine, args.writes)
        print(writes, flush=True)
        engine.dispose()
    write_report("changes-feed", {"database": "postgresql" if args.database_url else "sqlite",
                                  "analyses": args.analyses, "items per analysis": ITEMS,
                                  "save_analysis": writes, "walks": reads})


if __name__ == "__main__":
    main()
