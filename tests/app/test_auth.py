"""API keys and per-key limits: keyless by default; with API_KEYS_REQUIRED every /v1 call needs a key
(stored hashed), each key has a request rate and a job-URL quota (429 rate_limited + Retry-After), counted
in Redis when configured so that all workers share the count; health, readiness and metrics stay open."""
import hashlib
import io
import os
import re
import time

import pytest
from sqlalchemy import select

from app import create_app, db
from app.models import Analysis, ApiKey, Job

from .servers import garment_photo

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def settings(settings):
    return settings.replace(api_keys_required=True, metrics_token="metrics-secret")


def new_key(app, *options) -> tuple[int, str]:
    result = app.test_cli_runner().invoke(args=["keys", "create", "shop", *options])
    assert result.exit_code == 0, result.output
    match = re.search(r"created key (\d+) .*\n(ft_\S+)", result.output)
    return int(match.group(1)), match.group(2)


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


def upload(client, headers, seed=1):
    data = {"image": (io.BytesIO(garment_photo((seed * 50 % 255, 60, 90), seed=seed)), "x.jpg")}
    return client.post("/v1/analyses", data=data, content_type="multipart/form-data", headers=headers)


def test_every_v1_call_needs_a_valid_key(client, app):
    _, key = new_key(app)
    for response in (client.get("/v1/items"), client.get("/v1/items", headers=bearer("ft_wrong")),
                     client.post("/v1/jobs", json={"image_urls": ["x"]}), client.get("/v1/jobs/abc")):
        assert response.status_code == 401
        assert response.headers["Content-Type"] == "application/problem+json"
        assert response.json["code"] == "unauthorized" and "Bearer" in response.headers["WWW-Authenticate"]
    assert client.get("/v1/items", headers=bearer(key)).status_code == 200
    assert client.get("/v1/items", headers={"X-API-Key": key}).status_code == 200


def test_health_readiness_and_metrics_stay_open(client):
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/metrics").status_code == 401  # METRICS_TOKEN is set: its own token, not an API key
    assert client.get("/metrics", headers=bearer("metrics-secret")).status_code == 200


def test_keys_are_stored_hashed_listed_and_revoked(client, app):
    key_id, key = new_key(app)
    with app.app_context():
        row = db.session().get(ApiKey, key_id)
        assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
        assert key not in {str(v) for v in vars(row).values()}  # the key itself is nowhere
    listing = app.test_cli_runner().invoke(args=["keys", "list"]).output
    assert key[:10] in listing and key not in listing
    assert app.test_cli_runner().invoke(args=["keys", "revoke", str(key_id)]).exit_code == 0
    assert client.get("/v1/items", headers=bearer(key)).status_code == 401


def test_analyses_and_jobs_record_their_key(client, app):
    key_id, key = new_key(app)
    created = upload(client, bearer(key))
    assert created.status_code == 201, created.json
    job = client.post("/v1/jobs", json={"image_urls": ["not a url"]}, headers=bearer(key))
    assert job.status_code == 202, job.json
    with app.app_context():
        session = db.session()
        assert session.get(Analysis, created.json["id"]).api_key_id == key_id
        assert session.get(Job, job.json["id"]).api_key_id == key_id


def test_request_rate_per_key(client, app):
    _, slow = new_key(app, "--rate-limit", "3/minute")
    _, other = new_key(app)
    answers = [client.get("/v1/items", headers=bearer(slow)) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [200] * 3
    # every answer says the budget and what is left of it, so a client can pace itself
    assert [answer.headers["X-RateLimit-Remaining"] for answer in answers] == ["2", "1", "0"]
    assert {answer.headers["X-RateLimit-Limit"] for answer in answers} == {"3"}
    assert 0 < int(answers[-1].headers["X-RateLimit-Reset"]) - time.time() <= 61
    refused = client.get("/v1/jobs/abc", headers=bearer(slow))  # one budget across all routes
    assert refused.status_code == 429 and refused.json["code"] == "rate_limited"
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert 0 < int(refused.headers["Retry-After"]) <= 61  # the window's end, rounded up
    assert client.get("/v1/items", headers=bearer(other)).status_code == 200  # each key its own count


def test_job_url_quota_per_key(client, app):
    _, key = new_key(app, "--job-url-quota", "5/day")
    assert client.post("/v1/jobs", json={"image_urls": ["bad 1", "bad 2", "bad 3"]}, headers=bearer(key)).status_code == 202
    refused = client.post("/v1/jobs", json={"image_urls": ["bad 4", "bad 5", "bad 6"]}, headers=bearer(key))
    assert refused.status_code == 429 and refused.json["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) > 0
    with app.app_context():
        assert len(db.session().scalars(select(Job)).all()) == 1  # the refused job was not stored
    assert client.post("/v1/jobs", json={"image_urls": ["bad 7", "bad 8"]}, headers=bearer(key)).status_code == 202


def test_an_idempotent_retry_uses_no_quota_and_keys_do_not_share_idempotency_keys(client, app):
    _, key = new_key(app, "--job-url-quota", "5/day")
    _, other = new_key(app)
    three = {"image_urls": ["bad 1", "bad 2", "bad 3"]}
    retry = {"Idempotency-Key": "batch-7"}
    first = client.post("/v1/jobs", json=three, headers=bearer(key) | retry)
    assert client.post("/v1/jobs", json=three, headers=bearer(key) | retry).json["id"] == first.json["id"]
    assert client.post("/v1/jobs", json={"image_urls": ["bad 4", "bad 5"]}, headers=bearer(key)).status_code == 202
    # another API key's same Idempotency-Key is its own
    assert client.post("/v1/jobs", json=three, headers=bearer(other) | retry).json["id"] != first.json["id"]


def test_keyless_by_default(settings, pipeline):
    application = create_app(settings.replace(api_keys_required=False, metrics_token=None))
    application.extensions["pipeline"].set(pipeline)
    client = application.test_client()
    assert client.get("/v1/items").status_code == 200 and client.get("/metrics").status_code == 200
    application.extensions["engine"].dispose()


def test_redis_counts_are_shared_by_workers(settings, pipeline, app):
    """Two app instances (as two gunicorn workers) with one Redis: one key's count is shared."""
    shared = settings.replace(rate_limit_storage_url=REDIS_URL)
    workers = [create_app(shared) for _ in range(2)]
    _, key = new_key(workers[0], "--rate-limit", "4/minute")
    clients = [w.test_client() for w in workers]
    statuses = [clients[i % 2].get("/v1/items", headers=bearer(key)).status_code for i in range(6)]
    assert statuses == [200, 200, 200, 200, 429, 429]
    for worker in workers:
        worker.extensions["engine"].dispose()


def test_a_job_refused_by_the_queue_uses_no_quota(settings, pipeline):
    from .servers import TcpProxy

    redis_port = int(REDIS_URL.rsplit(":", 1)[1].split("/")[0])
    with TcpProxy(redis_port) as proxy:
        application = create_app(settings.replace(broker_url=f"redis://127.0.0.1:{proxy.port}/0", broker_timeout=1.0,
                                                  job_queue=f"fashion-tagger-test-quota-{os.getpid()}"))
        try:
            _, key = new_key(application, "--job-url-quota", "5/day")
            client = application.test_client()
            urls = ["http://127.0.0.1:9/a.jpg", "http://127.0.0.1:9/b.jpg", "http://127.0.0.1:9/c.jpg"]
            proxy.stop()
            retry = {"Idempotency-Key": "first-try"}
            assert client.post("/v1/jobs", json={"image_urls": urls}, headers=bearer(key) | retry).status_code == 503
            proxy.start()
            # nothing was stored, its Idempotency-Key neither: the retry makes the job, and the 503 used no quota
            assert client.post("/v1/jobs", json={"image_urls": urls}, headers=bearer(key) | retry).status_code == 202
            two = ["http://127.0.0.1:9/d.jpg", "http://127.0.0.1:9/e.jpg"]
            assert client.post("/v1/jobs", json={"image_urls": two}, headers=bearer(key)).status_code == 202
        finally:
            application.extensions["engine"].dispose()
            import redis as redis_client
            redis_client.Redis.from_url(REDIS_URL).delete(f"fashion-tagger-test-quota-{os.getpid()}")
