"""What reading a big job's results costs (app/jobs/results.py, GET /v1/jobs/<id>/results): time and memory.

    nice -n 15 .venv/bin/python bench/job_results.py [--urls 10000] [--database-url URL]

A fresh database (SQLite in a temporary folder unless --database-url names an empty PostgreSQL database)
holding one finished job of `--urls` URLs, each with its analysis of 4 items (a whole image and 3 garments
with masks, as bench/changes_feed.py stores them). Each format (NDJSON, CSV) is read to the end three
times, timed, then once more under tracemalloc for the peak of Python allocations; and once with the whole
job in one chunk, the peak a reader that does not chunk would reach. Writes bench/results/job-results-<time>.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from app.jobs import results  # noqa: E402
from app.models import Job, JobUrl  # noqa: E402
from bench.changes_feed import ITEMS, fill  # noqa: E402
from bench.databases import empty_database, move_sequences_past_given_ids  # noqa: E402
from bench.results import write_report  # noqa: E402

JOB_ID = "bench"
FORMATS = {"ndjson": results.ndjson_lines, "csv": results.csv_lines}


def add_job(engine, urls: int) -> None:
    """One finished job whose URL n produced analysis n + 1."""
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    with engine.begin() as connection:
        connection.execute(Job.__table__.insert(), [{"id": JOB_ID, "state": "done", "refresh": False,
                                                     "created_at": now, "started_at": now, "finished_at": now}])
        connection.execute(JobUrl.__table__.insert(), [
            {"job_id": JOB_ID, "position": n, "url": f"https://shop.example/{n + 1}.jpg", "state": "done",
             "attempts": 1, "analysis_id": n + 1, "updated_at": now} for n in range(urls)])


def read_all(engine, lines) -> int:
    with Session(engine) as session:
        return sum(len(text) for text in lines(session, JOB_ID))


def measure(engine, name: str, lines) -> dict:
    seconds = []
    for _ in range(3):
        start = time.perf_counter()
        size = read_all(engine, lines)
        seconds.append(time.perf_counter() - start)
    tracemalloc.start()
    read_all(engine, lines)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"format": name, "chunk": results.CHUNK, "characters": size,
            "seconds p50": round(float(np.median(seconds)), 3), "peak python MiB": round(peak / 2**20, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--urls", type=int, default=10_000)
    parser.add_argument("--database-url", help="an empty PostgreSQL database (default: SQLite in a temp folder)")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        engine = empty_database(args.database_url, folder, "job-results")
        fill(engine, args.urls)
        move_sequences_past_given_ids(engine, ("images", "analyses"))
        add_job(engine, args.urls)
        for chunk in (results.CHUNK, args.urls):
            results.CHUNK = chunk
            for name, lines in FORMATS.items():
                runs.append(measure(engine, name, lines))
                print(runs[-1], flush=True)
        engine.dispose()
    write_report("job-results", {"database": "postgresql" if args.database_url else "sqlite", "urls": args.urls,
                                 "items per analysis": ITEMS, "runs": runs})


if __name__ == "__main__":
    main()
