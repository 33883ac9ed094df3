"""Fault run (not a test): a 200-URL job on two Celery workers while PostgreSQL and then Redis are each
stopped and started again. Checks that the job completes, every URL is stored exactly once and the
job's webhook is sent once.

    .venv/bin/python bench/faults.py [--urls 200] [--outage 15]

Redis is a private redis-server started here on a free port with an append-only file, as deployed
(docker-compose.yml), and stopped with SIGTERM; PostgreSQL is the machine's cluster (a fresh database
in it), stopped and started with pg_ctlcluster and always started again at the end. Images and the
webhook receiver are served from 127.0.0.1. Writes bench/results/faults-<time>.json.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402,F401  (before TensorFlow)
import torchvision  # noqa: E402,F401
from sqlalchemy import create_engine, func, select, text  # noqa: E402

from app import create_app  # noqa: E402
from app.config import Settings  # noqa: E402
from app.db import upgrade  # noqa: E402
from app.models import Analysis, ImageRecord, Job, JobUrl  # noqa: E402
from bench.results import write_report  # noqa: E402
from tests.app.servers import LocalServer  # noqa: E402

PG_SERVER = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PG_VERSION = sorted(os.listdir("/etc/postgresql"))[-1] if os.path.isdir("/etc/postgresql") else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres(action: str) -> None:
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", PG_VERSION, "main", action], check=True, timeout=120)


class Redis:
    def __init__(self, folder: Path):
        self.folder, self.port, self.process = folder, free_port(), None

    def start(self):
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--appendonly", "yes",
             "--appendfsync", "everysec", "--save", "", "--dir", str(self.folder)],
            stdout=open(self.folder / "redis.log", "a"), stderr=subprocess.STDOUT)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("redis did not start")

    def stop(self):
        self.process.send_signal(signal.SIGTERM)  # a clean shutdown: the append-only file is flushed
        self.process.wait(timeout=30)


class Workers:
    def __init__(self, env: dict, folder: Path):
        self.env, self.folder, self.processes = env, folder, []

    def start(self, name: str):
        log = self.folder / f"{name}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "app.jobs.worker", "worker", "--pool=solo", "-n", f"{name}@%h",
             "-Q", self.env["JOB_QUEUE"], "--loglevel=INFO", "--without-gossip", "--without-mingle"],
            cwd=ROOT, env=self.env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(process)
        deadline = time.monotonic() + 300
        while "models loaded" not in log.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(log.read_text()[-3000:])
            time.sleep(0.5)

    def stop(self):
        for process in self.processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def progress(engine, job_id: str) -> dict | None:
    """URL states of the job, or None while the database is away."""
    try:
        with engine.connect() as connection:
            rows = connection.execute(select(JobUrl.state, func.count()).where(JobUrl.job_id == job_id)
                                      .group_by(JobUrl.state)).all()
            state = connection.scalar(select(Job.state).where(Job.id == job_id))
        return {"job": state, **dict(rows)}
    except Exception:  # noqa: BLE001 - the outage we caused
        return None


def wait(engine, job_id, until, timeout, log) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = progress(engine, job_id)
        if seen is not None and until(seen):
            log(f"progress {seen}")
            return
        time.sleep(1)
    raise RuntimeError(f"timed out waiting; last progress {progress(engine, job_id)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--urls", type=int, default=200)
    parser.add_argument("--outage", type=float, default=15.0, help="seconds each dependency stays down")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="faults-"))
    started = time.monotonic()
    events = []

    def log(message):
        line = f"{time.monotonic() - started:7.1f} s  {message}"
        events.append(line)
        print(line, flush=True)

    name = f"fashion_tagger_faults_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_SERVER, isolation_level="AUTOCOMMIT", pool_pre_ping=True)  # survives the restart
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    database_url = PG_SERVER.rsplit("/", 1)[0] + f"/{name}"
    upgrade(database_url)
    redis = Redis(folder)
    redis.start()
    queue = f"fashion-tagger-faults-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "DATABASE_URL": database_url, "BROKER_URL": f"redis://127.0.0.1:{redis.port}/0",
           "JOB_QUEUE": queue, "FETCH_ALLOW_PRIVATE": "127.0.0.0/8", "JOB_BATCH_SIZE": "4",
           "JOB_VISIBILITY_TIMEOUT": "30", "WEBHOOK_SECRET": "bench", "LOG_LEVEL": "INFO"}
    workers = Workers(env, folder)
    engine = create_engine(database_url, pool_pre_ping=True, connect_args={"connect_timeout": 2})
    report: dict = {"config": {"urls": args.urls, "outage_s": args.outage, "workers": 2, "batch_size": 4}}
    try:
        with LocalServer() as images:
            workers.start("w1")
            workers.start("w2")
            log("two workers ready")
            app = create_app(Settings.from_env(env))
            urls = [images.url(f"/img/{n}.jpg?delay=0.05") for n in range(1000, 1000 + args.urls)]
            submitted = app.test_client().post("/v1/jobs", json={"image_urls": urls, "callback_url": images.url("/hook")})
            assert submitted.status_code == 202, submitted.json
            job_id = submitted.json["id"]
            log(f"job {job_id} submitted ({args.urls} URLs)")
            wait(engine, job_id, lambda p: p.get("done", 0) >= args.urls * 0.2, 900, log)
            postgres("stop")
            log("PostgreSQL stopped")
            time.sleep(args.outage)
            postgres("start")
            log("PostgreSQL started")
            wait(engine, job_id, lambda p: p.get("done", 0) >= args.urls * 0.6, 900, log)
            redis.stop()
            log("Redis stopped")
            time.sleep(args.outage)
            redis.start()
            log("Redis started")
            wait(engine, job_id, lambda p: p["job"] == "done", 1200, log)
            time.sleep(5)  # a late duplicate webhook would arrive now
            with engine.connect() as connection:
                per_url = connection.execute(select(JobUrl.state, JobUrl.analysis_id).where(JobUrl.job_id == job_id)).all()
                report["results"] = {
                    "job_state": connection.scalar(select(Job.state).where(Job.id == job_id)),
                    "urls_done": sum(1 for s, _ in per_url if s == "done"),
                    "urls_not_done": sum(1 for s, _ in per_url if s != "done"),
                    "distinct_analyses_of_urls": len({a for _, a in per_url if a}),
                    "analyses_stored": connection.scalar(select(func.count()).select_from(Analysis)),
                    "images_stored": connection.scalar(select(func.count()).select_from(ImageRecord)),
                    "webhooks_received": sum(1 for path, _h, _b in images.httpd.posts if path == "/hook"),
                    "callback_state": connection.scalar(select(Job.callback_state).where(Job.id == job_id)),
                    "elapsed_s": round(time.monotonic() - started, 1),
                }
    finally:
        workers.stop()
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", PG_VERSION, "main", "start"], timeout=120)
        if redis.process and redis.process.poll() is None:
            redis.stop()
        engine.dispose()
        try:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        except Exception as error:  # noqa: BLE001
            print(f"could not drop {name}: {error}")
        admin.dispose()
        for worker_log in folder.glob("w*.log"):
            report.setdefault("worker_retries_logged", {})[worker_log.stem] = worker_log.read_text().count("Retry in")
        shutil.rmtree(folder, ignore_errors=True)
    report["events"] = events
    results = report["results"]
    print(f"\njob {results['job_state']}: {results['urls_done']}/{args.urls} URLs done, "
          f"{results['analyses_stored']} analyses and {results['images_stored']} images stored "
          f"({results['distinct_analyses_of_urls']} distinct analyses referenced), "
          f"webhooks received: {results['webhooks_received']} ({results['callback_state']}), {results['elapsed_s']} s")
    write_report("faults", report)


if __name__ == "__main__":
    main()
