"""Dependency outages answer 503 problem+json and write nothing; readiness names the dependency that is
down; service comes back by itself. The dependencies are taken away for real: a closed port, or a TCP
proxy in front of the real PostgreSQL / Redis that the test stops and starts (the shared servers are
never stopped). Everything stays on 127.0.0.1."""
import io
import os
import socket
import time
import uuid

import pytest
import redis
from sqlalchemy import create_engine, func, select

from app import create_app
from app.models import Analysis, Job

from .servers import TcpProxy, garment_photo

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens here once the socket is closed


def upload(client, seed):
    data = {"image": (io.BytesIO(garment_photo((seed * 40 % 255, 90, 120), seed=seed)), "x.jpg")}
    return client.post("/v1/analyses", data=data, content_type="multipart/form-data")


def make_app(settings, pipeline):
    application = create_app(settings)
    application.extensions["pipeline"].set(pipeline)
    return application


def count(url, model):
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.scalar(select(func.count()).select_from(model))
    finally:
        engine.dispose()


def assert_unavailable(response, code):
    assert response.status_code == 503, response.json
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json["code"] == code
    assert int(response.headers["Retry-After"]) > 0


def test_database_down_is_503_database_unavailable(settings, pipeline):
    down = settings.replace(database_url=f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/test",
                            database_connect_timeout=2)
    application = make_app(down, pipeline)
    client = application.test_client()
    assert_unavailable(upload(client, 1), "database_unavailable")
    assert_unavailable(client.get("/v1/analyses/1"), "database_unavailable")
    assert_unavailable(client.get("/v1/items"), "database_unavailable")
    assert_unavailable(client.post("/v1/jobs", json={"image_urls": ["http://127.0.0.1:9/x.jpg"]}), "database_unavailable")
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json["unavailable"] == ["database"]
    assert ready.json["checks"]["database"].startswith("unavailable")
    assert client.get("/healthz").status_code == 200  # alive: the process itself is fine
    application.extensions["engine"].dispose()


@pytest.fixture
def postgres_proxy(postgres_database):
    if not postgres_database:
        pytest.skip("needs PostgreSQL: run with TEST_DATABASE_URL (CI does)")
    port = create_engine(postgres_database).url.port or 5432
    with TcpProxy(port) as proxy:
        yield proxy


def test_database_outage_and_recovery(settings, pipeline, postgres_proxy, database_url):
    through_proxy = create_engine(database_url).url.set(host="127.0.0.1", port=postgres_proxy.port)
    application = make_app(settings.replace(database_url=through_proxy.render_as_string(hide_password=False),
                                            database_connect_timeout=2), pipeline)
    client = application.test_client()
    try:
        assert upload(client, 1).status_code == 201
        postgres_proxy.stop()  # the database goes away, pooled connections included
        assert_unavailable(upload(client, 2), "database_unavailable")
        assert count(database_url, Analysis) == 1  # nothing half-written
        assert client.get("/readyz").json["unavailable"] == ["database"]
        postgres_proxy.start()  # it returns: no restart of the service needed
        assert upload(client, 2).status_code == 201
        assert client.get("/readyz").status_code == 200
        assert count(database_url, Analysis) == 2
    finally:
        application.extensions["engine"].dispose()


def test_job_submission_with_the_broker_down_stores_nothing(settings, pipeline, database_url, image_server):
    down = settings.replace(broker_url=f"redis://127.0.0.1:{closed_port()}/0", broker_timeout=1.0)
    application = make_app(down, pipeline)
    client = application.test_client()
    response = client.post("/v1/jobs", json={"image_urls": [image_server.url("/shirt.jpg")] * 3})
    assert_unavailable(response, "queue_unavailable")
    assert count(database_url, Job) == 0  # not stored at all
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json["unavailable"] == ["broker"]
    application.extensions["engine"].dispose()


def test_broker_outage_and_recovery(settings, pipeline, database_url, image_server):
    queue = f"fashion-tagger-test-{uuid.uuid4().hex[:8]}"
    real = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    with TcpProxy(real.connection_pool.connection_kwargs["port"]) as proxy:
        application = make_app(settings.replace(broker_url=f"redis://127.0.0.1:{proxy.port}/0", job_queue=queue,
                                                broker_timeout=1.0), pipeline)
        client = application.test_client()
        body = {"image_urls": [image_server.url(f"/img/{n}.jpg") for n in range(3)]}
        try:
            assert client.post("/v1/jobs", json=body).status_code == 202
            assert client.get("/readyz").status_code == 200
            proxy.stop()
            assert_unavailable(client.post("/v1/jobs", json=body), "queue_unavailable")
            assert count(database_url, Job) == 1  # the refused job was not kept
            assert client.get("/readyz").json["unavailable"] == ["broker"]
            proxy.start()
            assert client.post("/v1/jobs", json=body).status_code == 202
            assert client.get("/readyz").status_code == 200
            assert count(database_url, Job) == 2 and real.llen(queue) == 2  # one message per stored job
        finally:
            application.extensions["engine"].dispose()
            real.delete(queue)


def test_a_job_rides_out_a_database_outage(settings, pipeline, postgres_proxy, database_url, image_server):
    """Embedded queue: a batch that meets the outage is retried later, and the job completes."""
    through_proxy = create_engine(database_url).url.set(host="127.0.0.1", port=postgres_proxy.port)
    application = make_app(settings.replace(database_url=through_proxy.render_as_string(hide_password=False),
                                            database_connect_timeout=2, job_batch_size=2), pipeline)
    client = application.test_client()
    try:
        urls = [image_server.url(f"/img/{n}.jpg?delay=0.3") for n in range(500, 506)]
        job_id = client.post("/v1/jobs", json={"image_urls": urls}).json["id"]
        time.sleep(0.5)  # the first batch is downloading
        postgres_proxy.stop()
        time.sleep(3)
        postgres_proxy.start()
        deadline = time.monotonic() + 90
        while (body := client.get(f"/v1/jobs/{job_id}").json)["state"] != "done":
            assert time.monotonic() < deadline, body
            time.sleep(0.5)
        assert body["counts"]["done"] == 6 and count(database_url, Analysis) == 6
    finally:
        application.extensions["engine"].dispose()
