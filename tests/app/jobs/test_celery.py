"""Jobs on Celery with the real Redis (127.0.0.1:6379): scale-out across two worker processes and
recovery from a worker killed with SIGKILL mid-job."""
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, func, select, text

from app.jobs.queue import CeleryQueue, redelivery_sweep
from app.models import Analysis, JobUrl

ROOT = Path(__file__).resolve().parents[3]
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="module", autouse=True)
def redis_available():
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        pytest.fail(f"Redis is required at {REDIS_URL} for the job-queue tests: {error}")


@pytest.fixture
def queue_name():
    return f"fashion-tagger-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def settings(settings, queue_name):
    return settings.replace(broker_url=REDIS_URL, job_queue=queue_name, job_batch_size=2, job_visibility_timeout=5)


class Workers:
    def __init__(self, database_url, queue_name, tmp_path):
        self.env = {**os.environ, "DATABASE_URL": database_url, "BROKER_URL": REDIS_URL, "JOB_QUEUE": queue_name,
                    "JOB_VISIBILITY_TIMEOUT": "5", "FETCH_ALLOW_PRIVATE": "127.0.0.0/8", "JOB_BATCH_SIZE": "2",
                    "FETCH_READ_TIMEOUT": "3"}
        self.tmp_path, self.processes = tmp_path, {}

    def start(self, name):
        log = self.tmp_path / f"{name}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "app.jobs.worker", "worker", "--pool=solo", "-n", f"{name}@%h",
             "-Q", self.env["JOB_QUEUE"], "--loglevel=INFO", "--without-gossip", "--without-mingle"],
            cwd=ROOT, env=self.env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
        self.processes[name] = (process, log)
        deadline = time.monotonic() + 120
        while "models loaded" not in log.read_text():
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)

    def kill(self, name):
        process, _ = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop_all(self):
        for name in list(self.processes):
            process, _ = self.processes.pop(name)
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture
def workers(database_url, queue_name, tmp_path):
    pool = Workers(database_url, queue_name, tmp_path)
    yield pool
    pool.stop_all()
    redis.Redis.from_url(REDIS_URL).delete(queue_name, f"{queue_name}\x06\x163", f"{queue_name}\x06\x166", f"{queue_name}\x06\x169")


def wait_for(client, job_id, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/v1/jobs/{job_id}?limit=1000").json
        if body["state"] == "done":
            return body
        time.sleep(0.5)
    raise AssertionError(f"job did not finish: {body}")


def stored_once(database_url, job):
    engine = create_engine(database_url)
    with engine.connect() as connection:
        analyses = connection.scalar(select(func.count()).select_from(Analysis))
        images = connection.scalar(text("SELECT count(*) FROM images"))
        workers = connection.execute(select(JobUrl.worker).where(JobUrl.job_id == job["id"]).distinct()).scalars().all()
    engine.dispose()
    return analyses, images, workers


def test_the_backlog_is_what_waits_in_the_broker(settings, queue_name):
    queue = CeleryQueue(settings)
    try:
        assert queue.backlog() == 0
        queue.submit("job", [1, 2])
        queue.submit("job", [3])
        assert queue.backlog() == 2  # no worker yet: both batches wait
    finally:
        redis.Redis.from_url(REDIS_URL).delete(queue_name)


def test_two_workers_share_one_queue(client, image_server, workers, database_url):
    workers.start("w1")
    workers.start("w2")
    urls = [image_server.url(f"/img/{n}.jpg?delay=0.3") for n in range(200, 216)]
    job = wait_for(client, client.post("/v1/jobs", json={"image_urls": urls}).json["id"])
    assert job["counts"]["done"] == 16
    analyses, images, names = stored_once(database_url, job)
    assert analyses == images == 16  # every URL stored exactly once
    assert sorted(n.split("@")[0] for n in names) == ["w1", "w2"]  # both workers did work


def test_a_worker_killed_mid_job_loses_nothing(client, image_server, workers, database_url):
    workers.start("doomed")
    urls = [image_server.url(f"/img/{n}.jpg?delay=1.0") for n in range(300, 310)]
    job_id = client.post("/v1/jobs", json={"image_urls": urls}).json["id"]
    deadline = time.monotonic() + 120
    while not (counts := client.get(f"/v1/jobs/{job_id}").json["counts"])["done"] >= 2 or not counts["running"]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    workers.kill("doomed")  # SIGKILL inside its second batch: no chance to acknowledge or clean up
    # and as if it died in its sweep for dead workers' tasks, holding the sweep's lock for as long as it
    # would have: a rescue that waits out kombu's default five minutes fails here.
    lock_expiry = redelivery_sweep(int(workers.env["JOB_VISIBILITY_TIMEOUT"]))["unacked_mutex_expire"]
    assert redis.Redis.from_url(REDIS_URL).lock("unacked_mutex", timeout=lock_expiry).acquire(blocking=False)
    killed = client.get(f"/v1/jobs/{job_id}").json
    assert killed["state"] == "running"
    killed_mid_batch = {o["position"] for o in killed["outcomes"] if o["state"] == "running"}
    assert killed_mid_batch
    workers.start("rescuer")
    job = wait_for(client, job_id, timeout=90)
    assert job["counts"]["done"] == 10 and job["counts"]["failed"] == 0
    # the killed batch was delivered again, and done on its second attempt
    assert {o["position"] for o in job["outcomes"] if o["attempts"] == 2} == killed_mid_batch
    analyses, images, names = stored_once(database_url, job)
    assert analyses == images == 10  # nothing lost, nothing duplicated
    assert "rescuer" in {n.split("@")[0] for n in names}
