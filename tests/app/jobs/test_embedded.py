"""Jobs on the embedded queue (no broker): outcomes, retries, webhook, cancel, limits, CLI."""
import datetime as dt
import hashlib
import hmac
import json
import re
import threading
import time

import pytest
from sqlalchemy import select, update

from app import create_app
from app.jobs.cli import read_urls

from ..test_auth import bearer, new_key


@pytest.fixture
def settings(settings):
    return settings.replace(job_retry_backoff=0.05, webhook_backoff=0.05, webhook_secret="s3cret", job_batch_size=3)


def wait_for(client, job_id, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/v1/jobs/{job_id}?limit=1000").json
        if body["state"] in ("done", "cancelled") and body["counts"]["running"] == 0:
            return body
        time.sleep(0.2)
    raise AssertionError(f"job did not finish: {body}")


def test_mixed_job_records_every_outcome(client, image_server):
    image_server.flaky_failures["twice"] = 2
    urls = [image_server.url("/shirt.jpg"), image_server.url("/same-shirt.jpg"), image_server.url("/page.html"),
            "http://10.0.0.1/x.jpg", "ftp://nope/x.jpg", image_server.url("/img/7.jpg?delay=0.6"),
            image_server.url("/flaky?key=twice"), image_server.url("/unavailable")]
    created = client.post("/v1/jobs", json={"image_urls": urls})
    assert created.status_code == 202 and created.headers["Location"] == f"/v1/jobs/{created.json['id']}"
    job = wait_for(client, created.json["id"])
    by_position = {o["position"]: o for o in job["outcomes"]}
    assert [by_position[i]["state"] for i in range(8)] == ["done", "done", "failed", "failed", "failed", "done", "done", "failed"]
    assert by_position[0]["analysis_id"] == by_position[1]["analysis_id"]  # same bytes: one analysis
    assert by_position[2]["error"]["code"] == "unsupported_media_type" and by_position[2]["attempts"] == 1
    assert by_position[3]["error"]["code"] == "blocked_address" and by_position[3]["attempts"] == 1
    assert by_position[4]["error"]["code"] == "invalid_url" and by_position[4]["attempts"] == 0
    assert by_position[6]["attempts"] == 3  # two 503s retried, then success
    assert by_position[7]["error"]["code"] == "fetch_failed" and by_position[7]["attempts"] == 3  # retries stop
    assert job["progress"] == 1.0 and sum(job["counts"].values()) == 8
    assert job["errors"] == {"unsupported_media_type": 1, "blocked_address": 1, "invalid_url": 1, "fetch_failed": 1}
    analysis = client.get(f"/v1/analyses/{by_position[5]['analysis_id']}").json
    assert analysis["image"]["url"].endswith("/img/7.jpg?delay=0.6")


def test_already_analysed_urls_are_skipped(client, image_server):
    client.post("/v1/analyses", json={"image_url": image_server.url("/img/21.jpg")})
    job = wait_for(client, client.post("/v1/jobs", json={"image_urls": [image_server.url("/img/21.jpg")]}).json["id"])
    assert job["counts"]["skipped"] == 1 and job["outcomes"][0]["analysis_id"]


def test_webhook_is_signed_retried_and_delivered_once(client, image_server):
    image_server.httpd.posts.clear()
    image_server.httpd.post_statuses[:] = [500]
    job_id = client.post("/v1/jobs", json={"image_urls": [image_server.url("/img/3.jpg")],
                                           "callback_url": image_server.url("/hook")}).json["id"]
    job = wait_for(client, job_id)
    deadline = time.monotonic() + 10
    while client.get(f"/v1/jobs/{job_id}").json["callback"]["state"] is None and time.monotonic() < deadline:
        time.sleep(0.1)
    posts = [p for p in image_server.httpd.posts if p[0] == "/hook"]
    assert len(posts) == 2  # the first answered 500, the retry 200; no more after that
    path, headers, body = posts[-1]
    expected = hmac.new(b"s3cret", headers["X-FashionTagger-Timestamp"].encode() + b"." + body, hashlib.sha256).hexdigest()
    assert headers["X-FashionTagger-Signature"] == f"sha256={expected}"
    summary = json.loads(body)
    assert summary["id"] == job_id and summary["state"] == "done" and summary["counts"]["done"] == 1
    results = client.get(summary["results_url"])  # the receiver reads every URL's tags from there
    assert [json.loads(line)["analysis"]["id"] for line in results.get_data(as_text=True).splitlines()] == \
        [summary_outcome["analysis_id"] for summary_outcome in client.get(f"/v1/jobs/{job_id}").json["outcomes"]]
    assert client.get(f"/v1/jobs/{job_id}").json["callback"] == {"url": image_server.url("/hook"),
                                                                 "state": "delivered", "attempts": 2}
    assert job["state"] == "done"


def test_callback_url_must_pass_the_address_checks(client, app):
    response = client.post("/v1/jobs", json={"image_urls": ["http://127.0.0.1/x.jpg"],
                                             "callback_url": "http://169.254.169.254/hook"})
    assert (response.status_code, response.json["code"]) == (422, "blocked_address")
    from app import db
    from app.models import Job
    with app.app_context():
        assert db.session().query(Job).count() == 0


def test_cancel(client, image_server):
    urls = [image_server.url(f"/img/{n}.jpg?delay=0.5") for n in range(100, 112)]
    job_id = client.post("/v1/jobs", json={"image_urls": urls}).json["id"]
    cancelled = client.delete(f"/v1/jobs/{job_id}")
    assert cancelled.status_code == 200 and cancelled.json["state"] == "cancelled"
    job = wait_for(client, job_id)
    assert job["state"] == "cancelled" and job["counts"]["cancelled"] > 0
    assert job["counts"]["queued"] == 0 and job["counts"]["running"] == 0
    assert client.delete("/v1/jobs/nope").status_code == 404


def test_cancelling_a_job_with_urls_in_flight_leaves_none_queued(settings, pipeline, image_server):
    # A 3 s read timeout: the cancel surely lands while the two /slow downloads are in flight, and their
    # timeouts (transient failures, retried as a rule) come after it.
    application = create_app(settings.replace(fetch_read_timeout=3.0, fetch_deadline=6.0))
    application.extensions["pipeline"].set(pipeline)
    client = application.test_client()
    try:
        urls = [image_server.url("/img/130.jpg"), image_server.url("/slow?n=1"), image_server.url("/slow?n=2")]
        job_id = client.post("/v1/jobs", json={"image_urls": urls}).json["id"]
        deadline = time.monotonic() + 30
        while client.get(f"/v1/jobs/{job_id}").json["counts"]["running"] < 3:  # one batch: all three in flight
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert client.delete(f"/v1/jobs/{job_id}").json["state"] == "cancelled"
        wait_for(client, job_id)
        time.sleep(0.5)  # past the retry backoff: a retry that was scheduled anyway changes nothing
        job = client.get(f"/v1/jobs/{job_id}").json
        # the URL that finished in flight keeps its outcome; those that would have been retried are cancelled
        assert [outcome["state"] for outcome in job["outcomes"]] == ["done", "cancelled", "cancelled"]
        assert job["counts"] == {"queued": 0, "running": 0, "done": 1, "skipped": 0, "failed": 0, "cancelled": 2}
        assert (job["state"], job["progress"]) == ("cancelled", 1.0)
        assert [outcome["attempts"] for outcome in job["outcomes"]] == [1, 1, 1]  # none was tried again
    finally:
        application.extensions["engine"].dispose()


def in_flight_job(app) -> tuple[str, int]:
    """A job of one URL that a worker has taken (running), as process_urls leaves it."""
    from app.jobs import service
    from app.models import JobUrl

    with app.extensions["sessionmaker"]() as session:
        job, (url_id,) = service.create_job(session, ["http://127.0.0.1:9/a.jpg"], None, False, app.config["SETTINGS"])
        service.start(session, job.id)
        session.get(JobUrl, url_id).state = "running"
        session.commit()
        return job.id, url_id


def url_counts(app, job_id) -> dict:
    from app.jobs import service

    with app.extensions["sessionmaker"]() as session:
        return {state: n for state, n in service.counts(session, job_id).items() if n}


def test_a_cancel_while_a_worker_requeues_waits_for_it_and_cancels_the_url(app):
    from app.jobs import service

    job_id, url_id = in_flight_job(app)
    with app.extensions["sessionmaker"]() as worker:
        assert service.requeue_unless_cancelled(worker, job_id, [url_id])  # not committed yet
        cancelling = threading.Thread(target=lambda: service.cancel(app.extensions["sessionmaker"](), job_id))
        cancelling.start()
        cancelling.join(1.0)
        assert cancelling.is_alive()  # held back until the worker's transaction ends...
        worker.commit()
    cancelling.join(30)
    assert url_counts(app, job_id) == {"cancelled": 1}  # ...so it finds the URL queued, and cancels it


def test_a_worker_requeueing_while_a_cancel_commits_waits_for_it_and_cancels_the_url(app):
    from app.jobs import service
    from app.models import Job

    job_id, url_id = in_flight_job(app)
    with app.extensions["sessionmaker"]() as cancelling:  # cancel()'s first step, not committed yet
        cancelling.execute(update(Job).where(Job.id == job_id).values(state="cancelled"))
        requeued = []

        def work():
            with app.extensions["sessionmaker"]() as worker:
                requeued.append(service.requeue_unless_cancelled(worker, job_id, [url_id]))
                worker.commit()

        worker = threading.Thread(target=work)
        worker.start()
        worker.join(1.0)
        assert worker.is_alive()  # held back until the cancel commits...
        cancelling.commit()
    worker.join(30)
    assert requeued == [False] and url_counts(app, job_id) == {"cancelled": 1}  # ...so it sees it: no retry


def test_a_job_larger_than_the_whole_job_url_quota_is_refused_for_good(keyed_app):
    client = keyed_app.test_client()
    _, key = new_key(keyed_app, "--job-url-quota", "3/day")
    four = {"image_urls": [f"not a url {n}" for n in range(4)]}

    def refused_for_good(response):
        # not 429: no wait lets it through, so nothing tells a client to retry it as it is
        assert (response.status_code, response.json["code"]) == (413, "job_exceeds_quota"), response.json
        assert "Retry-After" not in response.headers
        assert (response.json["quota"], response.json["max_urls"]) == ("3/day", 3)
        assert "3/day" in response.json["detail"] and "split it into jobs of at most 3 URLs" in response.json["detail"]

    refused_for_good(client.post("/v1/jobs", json=four, headers=bearer(key)))  # with the whole quota unused
    # it used no quota: a job of three fits; then one more URL would fit only in the next window (429)
    accepted = client.post("/v1/jobs", json={"image_urls": ["not a url"] * 3}, headers=bearer(key))
    assert accepted.status_code == 202 and "Retry-After" not in accepted.headers  # only where a wait helps
    wait = client.post("/v1/jobs", json={"image_urls": ["not a url"]}, headers=bearer(key))
    assert (wait.status_code, wait.json["code"]) == (429, "rate_limited")
    assert 60 < int(wait.headers["Retry-After"]) <= 86400  # the end of the quota's day, not of the request rate's minute
    refused_for_good(client.post("/v1/jobs", json=four, headers=bearer(key)))  # the same answer whatever is used
    assert "job_exceeds_quota" in client.get("/openapi.json").json["components"]["schemas"]["Problem"]["properties"]["code"]["enum"]


@pytest.mark.parametrize("body", [{}, {"image_urls": []}, {"image_urls": "http://x"}, {"image_urls": ["x"], "refresh": "y"},
                                  {"image_urls": ["x"], "extra": 1}, {"image_urls": ["x"] * 10_001}])
def test_bad_job_requests(client, body):
    response = client.post("/v1/jobs", json=body)
    assert (response.status_code, response.json["code"]) == (400, "invalid_request")


def test_ingest_cli_runs_a_job_and_prints_a_summary(app, image_server, tmp_path):
    source = tmp_path / "urls.csv"
    source.write_text("sku,image_url\n1," + image_server.url("/img/41.jpg") + "\n2," + image_server.url("/gone") + "\n")
    assert read_urls(source) == [image_server.url("/img/41.jpg"), image_server.url("/gone")]
    result = app.test_cli_runner().invoke(args=["ingest", str(source)])
    assert result.exit_code == 0, result.output
    assert "done" in result.output and "fetch_failed" in result.output
    job_id = result.output.split("job(s) ")[1].split()[0]
    status = app.test_cli_runner().invoke(args=["jobs", "status", job_id])
    assert f"job {job_id}: done" in status.output
    listed = app.test_cli_runner().invoke(args=["jobs", "list", "--state", "done"])
    assert listed.exit_code == 0 and job_id in listed.output.splitlines()[1]


def lost_job(app, urls: list[str], running: int = 0, age_s: float = 0) -> str:
    """A job whose batches were never enqueued (as if its queue died with them): its first `running` URLs
    taken by a worker that died, the job made `age_s` ago."""
    from app.jobs import service
    from app.models import Job, JobUrl

    with app.extensions["sessionmaker"]() as session:
        job, url_ids = service.create_job(session, urls, None, False, app.config["SETTINGS"])
        service.start(session, job.id)
        job = session.get(Job, job.id)
        job.created_at -= dt.timedelta(seconds=age_s)
        for url_id in url_ids[:running]:
            row = session.get(JobUrl, url_id)
            row.state, row.attempts, row.updated_at = "running", 1, job.created_at
        session.commit()
        return job.id


def test_the_cli_resumes_a_stalled_job_and_leaves_busy_and_finished_ones_alone(app, image_server):
    stalled = lost_job(app, [image_server.url(f"/img/{n}.jpg") for n in (61, 62, 63)], running=1, age_s=1200)
    busy = lost_job(app, [image_server.url("/img/64.jpg")])  # made just now: its batch may well be on its way
    runner = app.test_cli_runner()
    resumed = runner.invoke(args=["jobs", "resume"])
    assert resumed.exit_code == 0, resumed.output
    assert f"job {stalled}: 3 URLs enqueued again" in resumed.output and busy not in resumed.output
    assert f"job {stalled}: done" in resumed.output  # no broker: run in this process, followed to the end
    with app.test_client() as client:
        outcomes = client.get(f"/v1/jobs/{stalled}").json["outcomes"]
        assert [(o["state"], o["attempts"]) for o in outcomes] == [("done", 2), ("done", 1), ("done", 1)]
        assert client.get(f"/v1/jobs/{busy}").json["counts"]["queued"] == 1
    assert "no stalled job" in runner.invoke(args=["jobs", "resume"]).output  # nothing open is left that old
    assert "no stalled job" in runner.invoke(args=["jobs", "resume", stalled, "--quiet-for", "0"]).output  # done
    forced = runner.invoke(args=["jobs", "resume", busy, "--quiet-for", "0"])
    assert f"job {busy}: 1 URL enqueued again" in forced.output and f"job {busy}: done" in forced.output


def test_the_cli_does_not_resume_a_cancelled_or_unknown_job(app):
    from app.jobs import service

    cancelled = lost_job(app, ["http://127.0.0.1:9/a.jpg"], age_s=1200)
    with app.extensions["sessionmaker"]() as session:
        service.cancel(session, cancelled)
    runner = app.test_cli_runner()
    assert "no stalled job" in runner.invoke(args=["jobs", "resume", cancelled]).output
    unknown = runner.invoke(args=["jobs", "resume", "nope"])
    assert unknown.exit_code != 0 and "no job nope" in unknown.output


def resumed_urls(app) -> float:
    metrics = app.test_client().get("/metrics").get_data(as_text=True)
    return float(re.search(r"^job_urls_resumed_total (\S+)$", metrics, re.M).group(1))


def test_serving_processes_resume_stalled_jobs_on_their_own(settings, pipeline, image_server):
    application = create_app(settings.replace(job_stall_timeout=4))  # looks every second
    application.extensions["pipeline"].set(pipeline)
    watch = application.extensions["stall_watch"]
    assert watch.run_once() == 0  # nothing stalled
    stalled = lost_job(application, [image_server.url("/img/71.jpg"), image_server.url("/img/72.jpg")],
                       running=1, age_s=60)
    resumed_before = resumed_urls(application)
    watch.start()
    try:
        with application.test_client() as client:
            job = wait_for(client, stalled)
        assert job["counts"]["done"] == 2 and [o["attempts"] for o in job["outcomes"]] == [2, 1]
        assert resumed_urls(application) == resumed_before + 2  # what /metrics tells an operator
        assert watch.run_once() == 0  # done: nothing left to resume
    finally:
        watch.stop()
        application.extensions["engine"].dispose()


def test_two_processes_resuming_one_job_enqueue_its_urls_once(app, database_url):
    from app.jobs import service
    from app.models import Job, JobUrl, utcnow

    if not database_url.startswith("postgresql"):
        pytest.skip("concurrent resumes are tested on PostgreSQL (set TEST_DATABASE_URL); SQLite takes no row lock")
    job_id = lost_job(app, ["http://127.0.0.1:9/a.jpg", "http://127.0.0.1:9/b.jpg"], age_s=60)
    quiet = dt.timedelta(seconds=30)
    results = []
    with app.extensions["sessionmaker"]() as first:  # the first process: job locked, URLs stamped, not committed
        first.execute(select(Job.id).where(Job.id == job_id).with_for_update())
        first.execute(update(JobUrl).where(JobUrl.job_id == job_id).values(updated_at=utcnow()))
        second = threading.Thread(target=lambda: results.append(
            service.resume(app.extensions["sessionmaker"](), job_id, quiet)))
        second.start()
        second.join(1.0)
        assert second.is_alive()  # waits on the job's row...
        first.commit()
    second.join(30)
    assert results == [[]]  # ...then finds it no longer stalled, and enqueues nothing


def test_a_process_with_batches_waiting_leaves_stalled_jobs_alone_until_it_is_idle(settings, pipeline, image_server):
    application = create_app(settings.replace(job_stall_timeout=30))
    application.extensions["pipeline"].set(pipeline)
    watch, queue = application.extensions["stall_watch"], application.extensions["job_queue"]
    stalled = lost_job(application, [image_server.url("/img/75.jpg")], age_s=60)
    with application.test_client() as client:
        busy = client.post("/v1/jobs", json={"image_urls": [image_server.url("/img/76.jpg?delay=0.5")]}).json["id"]
        assert queue.backlog() == 1
        assert watch.run_once() == 0  # the stalled job may be waiting behind this process's own batch
        wait_for(client, busy)
        assert queue.backlog() == 0
        assert watch.run_once() == 1  # idle now: it takes the stalled job
        assert wait_for(client, stalled)["counts"]["done"] == 1
    application.extensions["engine"].dispose()


def test_a_url_whose_last_attempt_never_finished_fails_as_worker_lost(app, image_server):
    from app.jobs import service
    from app.models import JobUrl

    job_id = lost_job(app, [image_server.url("/img/73.jpg"), image_server.url("/img/74.jpg")], running=1, age_s=60)
    with app.extensions["sessionmaker"]() as session:  # the first URL's worker died on its last attempt
        session.execute(update(JobUrl).where(JobUrl.job_id == job_id, JobUrl.state == "running")
                        .values(attempts=app.config["SETTINGS"].job_max_attempts))
        session.commit()
        url_ids = service.resume(session, job_id, dt.timedelta(seconds=30))
    with app.app_context():
        assert service.process_urls(app, job_id, url_ids) == []
    with app.test_client() as client:
        job = client.get(f"/v1/jobs/{job_id}").json
    assert job["state"] == "done" and job["errors"] == {"worker_lost": 1}
    assert [(o["state"], o["error"] and o["error"]["code"]) for o in job["outcomes"]] == [("failed", "worker_lost"),
                                                                                          ("done", None)]


def test_a_job_of_only_malformed_urls_finishes_at_once(client):
    created = client.post("/v1/jobs", json={"image_urls": ["ftp://x/y.jpg", "not a url"]})
    assert created.status_code == 202 and created.json["state"] == "done"
    assert created.json["counts"]["failed"] == 2 and created.json["errors"] == {"invalid_url": 2}
    # finished, so started too, as every finished job
    job = client.get(f"/v1/jobs/{created.json['id']}").json
    assert job["created_at"] <= job["started_at"] <= job["finished_at"], job
    assert created.json["started_at"] == job["started_at"] and created.json["finished_at"] == job["finished_at"]


def test_jobs_are_listed_newest_first_by_state_and_key(keyed_app):
    client = keyed_app.test_client()
    (_, shop), (_, other) = new_key(keyed_app), new_key(keyed_app)

    def listed(query: str = "", key: str = shop) -> dict:
        response = client.get(f"/v1/jobs{query}", headers=bearer(key))
        assert response.status_code == 200, response.json
        return response.json

    made = [client.post("/v1/jobs", json={"image_urls": [f"not a url {n}"]}, headers=bearer(key)).json["id"]
            for n, key in enumerate((shop, other, shop))]
    everything = listed()
    assert [job["id"] for job in everything["jobs"]] == made[::-1] and everything["next_cursor"] is None
    status = client.get(f"/v1/jobs/{made[2]}", headers=bearer(shop)).json  # each entry is the job's summary
    assert everything["jobs"][0] == {name: value for name, value in status.items() if name not in ("outcomes", "next_after")}
    # pages of two: the cursor goes on where the page ended
    first = listed("?limit=2")
    second = listed(f"?limit=2&cursor={first['next_cursor']}")
    assert [job["id"] for job in first["jobs"] + second["jobs"]] == made[::-1] and second["next_cursor"] is None
    assert [job["id"] for job in listed("?mine=true")["jobs"]] == [made[2], made[0]]
    assert [job["id"] for job in listed("?mine=true", other)["jobs"]] == [made[1]]
    assert [job["id"] for job in listed("?state=done")["jobs"]] == made[::-1]
    assert listed("?state=running") == {"jobs": [], "next_cursor": None}
    for query in ("state=finished", "limit=0", "limit=x", "cursor=abc", "mine=maybe"):
        response = client.get(f"/v1/jobs?{query}", headers=bearer(shop))
        assert (response.status_code, response.json["code"]) == (400, "invalid_request"), query


def test_mine_needs_a_key(client):
    response = client.get("/v1/jobs?mine=true")
    assert (response.status_code, response.json["code"]) == (400, "invalid_request")


def test_a_retried_submission_with_an_idempotency_key_gets_the_same_job(client):
    body = {"image_urls": ["not a url 1", "not a url 2"]}
    first = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "order-42"})
    again = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "order-42"})
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json["id"] == first.json["id"] and again.headers["Location"] == f"/v1/jobs/{first.json['id']}"
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert [job["id"] for job in client.get("/v1/jobs").json["jobs"]] == [first.json["id"]]  # one job stored
    # the key with another request is refused, naming the job it made; no key, or a new one, is a new job
    other = client.post("/v1/jobs", json={"image_urls": ["not a url 3"]}, headers={"Idempotency-Key": "order-42"})
    assert (other.status_code, other.json["code"], other.json["job_id"]) == (422, "idempotency_key_reused", first.json["id"])
    assert client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "order-43"}).json["id"] != first.json["id"]
    assert client.post("/v1/jobs", json=body).json["id"] != first.json["id"]
    for bad in ("x" * 201, "tab\there", "clé"):
        response = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": bad.encode("utf-8").decode("latin-1")})
        assert (response.status_code, response.json["code"]) == (400, "invalid_request"), bad


def test_two_requests_storing_one_idempotency_key_at_once_make_one_job(app):
    # what a concurrent retry meets: the first to commit wins, the other is told so and stores nothing
    from app import db
    from app.jobs import service
    from app.models import Job

    settings = app.config["SETTINGS"]
    idempotency = service.Idempotency.of("twice", None, ["not a url"], None, False)
    with app.app_context():
        session = db.session()
        first, _ = service.create_job(session, ["not a url"], None, False, settings, None, idempotency)
        with pytest.raises(service.IdempotencyKeyTaken):
            service.create_job(session, ["not a url"], None, False, settings, None, idempotency)
        assert session.scalars(select(Job.id)).all() == [first.id]
        assert service.job_for_idempotency(session, idempotency).id == first.id


def test_a_retry_racing_a_first_request_that_took_its_job_back_is_told_to_retry(client, monkeypatch):
    # the first request stored the key, then met a broker outage and deleted its job: nothing to replay
    from app.jobs import service

    def taken(*args, **kwargs):
        raise service.IdempotencyKeyTaken("k")

    monkeypatch.setattr(service, "create_job", taken)
    response = client.post("/v1/jobs", json={"image_urls": ["not a url"]}, headers={"Idempotency-Key": "k"})
    assert (response.status_code, response.json["code"]) == (503, "queue_unavailable")
    assert int(response.headers["Retry-After"]) > 0
