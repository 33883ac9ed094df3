"""What reading only each image's current analysis costs the catalogue query, and how long `flask retag`
takes to find the stale images.

    nice -n 15 .venv/bin/python bench/current_analyses.py [--images 50000] [--superseded 0.25] \
        [--database-url URL]

A fresh database (SQLite in a temporary folder unless --database-url names an empty PostgreSQL database,
whose tables are then emptied), filled with bulk inserts: `--images` images with one analysis of 4 items
each (a whole image and 3 garments), and for a `--superseded` share of them a second, newer analysis by
other bundles (so their first one is superseded). 1% of the images are tagged Flats, the rest Tshirts.
Timed, median and p99 of `--repeats` (each in its own transaction, as each request is):
- the catalogue query GET /v1/items runs (app.store.query_item_rows): a first page of 100 unfiltered,
  a page 100 pages in (by its cursor), and the first page of the rare filter articleType=Flats, each with
  the current analyses (served) and with `analyses=all` (the query before current analyses existed);
- `app.retag.plan`, what `flask retag --dry-run` does before it prints (every image's current analysis
  against the serving key, the stale ones' latest URLs).
Writes bench/results/current-analyses-<time>.json.
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
from sqlalchemy import text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402
from tqdm import tqdm  # noqa: E402

from app import retag  # noqa: E402
from app.filters import ItemFilters  # noqa: E402
from app.models import TASK_COLUMNS, Analysis, ImageRecord, ImageSource, Item  # noqa: E402
from app.store import encode_cursor, query_item_rows  # noqa: E402
from bench.databases import empty_database  # noqa: E402
from bench.results import write_report  # noqa: E402

ITEMS = 4
OLD_KEY, NEW_KEY = "bundles-before", "bundles-now"
TOP3 = [{"label": "Tshirts", "confidence": 0.5}] * 3


def fill(engine, images: int, superseded: float, seed: int = 0) -> dict:
    """Bulk rows: every image analysed by the old bundles, a share of them again by the new ones."""
    rng = np.random.default_rng(seed)
    again = set(rng.choice(images, int(images * superseded), replace=False).tolist())
    rare = set(rng.choice(images, max(1, images // 100), replace=False).tolist())
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    scores = {c: 0.5 for _, c in TASK_COLUMNS.values()}
    analysis_id, item_id = 0, 0
    with engine.begin() as connection:
        for start in tqdm(range(0, images, 2000), desc=f"filling {images} images", unit="chunk"):
            chunk = range(start, min(start + 2000, images))
            connection.execute(ImageRecord.__table__.insert(), [
                {"id": i + 1, "sha256": f"{i:064x}", "width": 640, "height": 480} for i in chunk])
            connection.execute(ImageSource.__table__.insert(), [
                {"image_id": i + 1, "url": f"https://shop.example/{i}.jpg", "last_seen_at": now} for i in chunk])
            analyses, items = [], []
            for i in chunk:
                for key in (OLD_KEY, NEW_KEY) if i in again else (OLD_KEY,):
                    analysis_id += 1
                    analyses.append({"id": analysis_id, "image_id": i + 1, "bundle_key": key, "bundles": {},
                                     "timings_ms": {}, "source_url": f"https://shop.example/{i}.jpg", "created_at": now})
                    article = "Flats" if i in rare else "Tshirts"
                    for position in range(ITEMS):
                        item_id += 1
                        items.append({"id": item_id, "analysis_id": analysis_id, "position": position,
                                      "kind": "garment" if position else "product", "category_path_confidence": 0.5,
                                      "top3": {t: TOP3 for t in TASK_COLUMNS}, "colours": [],
                                      **{column: "Tshirts" for column, _ in TASK_COLUMNS.values()},
                                      "article_type": article, **scores})
            connection.execute(Analysis.__table__.insert(), analyses)
            connection.execute(Item.__table__.insert(), items)
    return {"images": images, "analyses": analysis_id, "items": item_id, "superseded_analyses": len(again),
            "rare_images": len(rare)}


def timed(engine, repeats: int, run) -> dict:
    seconds = []
    with Session(engine) as session:
        for _ in range(repeats):
            start = time.perf_counter()
            run(session)
            seconds.append(time.perf_counter() - start)
            session.rollback()
    return {"p50_ms": round(float(np.median(seconds)) * 1000, 2),
            "p99_ms": round(float(np.percentile(seconds, 99)) * 1000, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--superseded", type=float, default=0.25)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--database-url", help="an empty PostgreSQL database (default: SQLite in a temp folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        engine = empty_database(args.database_url, folder, "current")
        filled = fill(engine, args.images, args.superseded)
        with engine.begin() as connection:  # fresh statistics for the planner, as a live database keeps them
            connection.execute(text("ANALYZE"))
        queries = {}
        for analyses in ("current", "all"):
            listing = ItemFilters({}, analyses=analyses)
            rare = ItemFilters({"articleType": "Flats"}, analyses=analyses)
            later = encode_cursor(100 * 100 * 2)  # about 100 pages in
            queries[analyses] = {
                "first page": timed(engine, args.repeats, lambda s: query_item_rows(s, listing, None, 100)),
                "page ~100": timed(engine, args.repeats, lambda s: query_item_rows(s, listing, later, 100)),
                "articleType=Flats, first page": timed(engine, args.repeats,
                                                       lambda s: query_item_rows(s, rare, None, 100)),
            }
            print(analyses, queries[analyses], flush=True)
        with Session(engine) as session:
            start = time.perf_counter()
            plan = retag.plan(session, NEW_KEY)
            plan_seconds = time.perf_counter() - start
        assert plan.current == filled["superseded_analyses"] and plan.stale == args.images - plan.current
        retag_plan = {"seconds": round(plan_seconds, 2), "current": plan.current, "stale": plan.stale,
                      "urls": len(plan.urls)}
        print("retag plan", retag_plan, flush=True)
        engine.dispose()
    write_report("current-analyses", {"database": "postgresql" if args.database_url else "sqlite",
                                      "filled": filled, "repeats": args.repeats, "item_query": queries,
                                      "retag_plan": retag_plan})


if __name__ == "__main__":
    main()
