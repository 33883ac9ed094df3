"""What keeping the labelled vote rows current costs a worker (app/label_votes.py), by how many items
people have labelled.

    nice -n 15 .venv/bin/python bench/label_votes.py [--labelled 1000 10000 100000] [--database-url URL]

For each count: a fresh database (SQLite in a temporary folder unless --database-url names an empty
PostgreSQL database, whose tables are then emptied) holding that many labelled items, each with a
398-value float16 embedding in the serving space (random unit vectors: the cost does not depend on
their values); the served bundle's vote. Timed, as the background check runs them: the check when
nothing changed (one aggregate query), and the re-read after one label changed (the query, the rows,
and the served vote rebuilt with them); and what a classifier call itself pays (`vote()`: no query).
Then the vote's rows and the memory they hold (resident memory after the re-reads, against before the first).
Writes bench/results/label-votes-<time>.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from classification import runtime  # noqa: E402,F401  (torch before TensorFlow, the backend first)

import numpy as np  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.orm import sessionmaker  # noqa: E402
from tqdm import tqdm  # noqa: E402

from app.db import make_engine, upgrade  # noqa: E402
from app.embeddings import to_bytes  # noqa: E402
from app.label_votes import LabelVotes  # noqa: E402
from app.models import TASK_COLUMNS, Analysis, Base, ImageRecord, Item, ItemEmbedding, ItemLabels  # noqa: E402
from bench.results import write_report  # noqa: E402
from classification.inference import Classifier  # noqa: E402

MODEL = "bench-space"


def fill(engine, count: int, dim: int, rng: np.random.Generator) -> None:
    """`count` images, each with one product item, its embedding and a person's articleType label."""
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    tags = {column: "x" for column, _ in TASK_COLUMNS.values()} | {confidence: 0.5 for _, confidence in TASK_COLUMNS.values()}
    with engine.begin() as connection:
        for start in tqdm(range(0, count, 5000), desc=f"filling {count}", unit="chunk"):
            ids = range(start + 1, min(start + 5000, count) + 1)
            vectors = rng.standard_normal((len(ids), dim)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            connection.execute(ImageRecord.__table__.insert(), [{"id": i, "sha256": f"{i:064x}", "width": 1, "height": 1} for i in ids])
            connection.execute(Analysis.__table__.insert(), [
                {"id": i, "image_id": i, "bundle_key": "k", "bundles": {}, "timings_ms": {}, "created_at": now} for i in ids])
            connection.execute(Item.__table__.insert(), [
                {"id": i, "analysis_id": i, "position": 0, "kind": "product", "category_path_confidence": 0.5,
                 "top3": {}, "colours": [], **tags} for i in ids])
            connection.execute(ItemEmbedding.__table__.insert(), [
                {"item_id": i, "model": MODEL, "vector": to_bytes(v)} for i, v in zip(ids, vectors)])
            connection.execute(ItemLabels.__table__.insert(), [
                {"item_id": i, "labels": {"articleType": "Tshirts"}, "model_tags": {}, "revision": secrets.randbits(31),
                 "updated_at": now} for i in ids])


def timed(call, repeat: int) -> dict:
    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return {"p50_ms": round(float(np.median(seconds)) * 1000, 2), "max_ms": round(max(seconds) * 1000, 2)}


def rss_mb() -> float:
    """This process's resident memory now (Linux)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(url: str, count: int, classifier: Classifier, rng: np.random.Generator) -> dict:
    engine = make_engine(url)
    if url.startswith("postgresql"):
        with engine.begin() as connection:
            connection.execute(text("TRUNCATE " + ", ".join(t.name for t in reversed(Base.metadata.sorted_tables))
                                    + " RESTART IDENTITY CASCADE"))
    fill(engine, count, classifier.embedding_dim, rng)
    votes = LabelVotes(sessionmaker(engine, expire_on_commit=False), sync_seconds=3600)
    votes.attach(SimpleNamespace(classifier=classifier, embedding_model=MODEL))
    before = rss_mb()
    first = timed(votes.refresh, 1)
    assert votes.rows == count, (votes.rows, count)
    unchanged = timed(votes.refresh, 50)

    def after_a_change():
        with engine.begin() as connection:
            connection.execute(ItemLabels.__table__.update().where(ItemLabels.item_id == 1)
                               .values(revision=secrets.randbits(31)))
        assert votes.refresh()

    changed = timed(after_a_change, 5)
    votes.vote()  # starts the hour's one check
    votes.wait()
    start = time.perf_counter()
    for _ in range(10_000):
        votes.vote()
    request_path_us = (time.perf_counter() - start) / 10_000 * 1e6
    rows = votes.vote().row_count
    gc.collect()
    held = rss_mb() - before
    classifier.vote_source = None
    engine.dispose()
    return {"labelled items": count, "vote rows": rows, "first read": first,
            "background check, nothing changed": unchanged,
            "background check after one label changed: write + re-read + rebuild": changed,
            "classifier call's vote(), no check due (us, mean of 10,000)": round(request_path_us, 2),
            "RSS held by the rows, MB (after the re-reads)": round(held, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labelled", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--database-url", help="an empty PostgreSQL database (default: SQLite files in a temp folder)")
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "fashion-lite0")
    args = parser.parse_args()
    classifier = Classifier(args.bundle)
    rng = np.random.default_rng(0)
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for count in args.labelled:
            url = args.database_url or f"sqlite:///{folder}/labels-{count}.sqlite3"
            upgrade(url)
            results.append(measure(url, count, classifier, rng))
            print(results[-1], flush=True)
    write_report("label-votes", {"database": "postgresql" if args.database_url else "sqlite",
                                 "bundle_vote_rows": len(classifier.neighbour_vote.vectors), "results": results})


if __name__ == "__main__":
    main()
