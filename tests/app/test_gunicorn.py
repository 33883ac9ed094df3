"""The service as deployed: a real gunicorn with two workers on a free port."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests


from .servers import garment_photo

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def gunicorn(tmp_path, database_url):
    """The base URL; the log is tmp_path / 'gunicorn.log'."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "FETCH_ALLOW_PRIVATE": "127.0.0.0/8", "WEB_CONCURRENCY": "2",
           "BIND": f"127.0.0.1:{port}", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    (tmp_path / "metrics").mkdir()
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"], cwd=ROOT,
                               env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "gunicorn.log", "w"),
                               start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(process, base, tmp_path / "gunicorn.log")
        yield base
    finally:  # also when start-up failed: never leave a server behind
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the master and its workers


def wait_until_ready(process, base, log, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass
        assert process.poll() is None, log.read_text()[-3000:]
        time.sleep(1)
    pytest.fail("gunicorn never became ready:\n" + log.read_text()[-3000:])


def log_count(log: Path, text: str, expected: int, timeout: float = 120) -> int:
    """How often `text` is in the log once it reaches `expected` times, or when the timeout ends."""
    deadline = time.monotonic() + timeout
    while (count := log.read_text().count(text)) < expected and time.monotonic() < deadline:
        time.sleep(0.5)
    return count


def test_served_by_gunicorn(gunicorn, image_server, tmp_path):
    hook = f"/hook/{uuid.uuid4().hex}"
    subscription = requests.post(f"{gunicorn}/v1/subscriptions", json={"callback_url": image_server.url(hook)}, timeout=10)
    assert subscription.status_code == 201, subscription.text
    created = requests.post(f"{gunicorn}/v1/analyses", files={"image": ("x.jpg", garment_photo((90, 20, 120)))}, timeout=60)
    assert created.status_code == 201, created.text
    by_url = requests.post(f"{gunicorn}/v1/analyses", json={"image_url": image_server.url("/shirt.jpg")}, timeout=60)
    assert by_url.status_code == 201, by_url.text
    for _ in range(6):  # spread over both workers
        assert requests.get(f"{gunicorn}/healthz", timeout=5).status_code == 200
    assert requests.get(f"{gunicorn}/v1/analyses/{created.json()['id']}", timeout=5).json()["id"] == created.json()["id"]
    metrics = requests.get(f"{gunicorn}/metrics", timeout=5).text
    line = next(row for row in metrics.splitlines() if row.startswith('http_requests_total{method="GET",route="/healthz"'))
    assert float(line.rsplit(" ", 1)[1]) == 6.0  # counted across workers, not per worker
    problem = requests.post(f"{gunicorn}/v1/analyses", json={"image_url": "http://10.0.0.1/x.jpg"}, timeout=10)
    assert problem.headers["Content-Type"] == "application/problem+json" and problem.json()["code"] == "blocked_address"

    # Each worker built its similarity index at start and sees the items either worker stores. (Readiness
    # came from one worker; the other may still be loading its models on these cores: wait for its line.)
    assert log_count(tmp_path / "gunicorn.log", "similarity index built", expected=2) == 2
    product = created.json()["items"][0]["id"]
    for _ in range(6):
        similar = requests.get(f"{gunicorn}/v1/items/{product}/similar", params={"kind": "product"}, timeout=30)
        assert [r["item"]["analysis_id"] for r in similar.json()["results"]] == [by_url.json()["id"]]

    # Both workers deliver the changes feed's webhooks; the lease lets one at a time send each entry.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        entries = [c for path, _headers, body in image_server.httpd.posts if path == hook
                   for c in json.loads(body)["changes"]]
        if len(entries) >= 2:
            break
        time.sleep(0.5)
    time.sleep(3)  # a second delivery of the same entries would come within a pass (2 s)
    entries = [c for path, _headers, body in image_server.httpd.posts if path == hook for c in json.loads(body)["changes"]]
    assert sorted(c["analysis_id"] for c in entries) == sorted([created.json()["id"], by_url.json()["id"]])
