"""/v1/jobs: submit a list of URLs, watch it, cancel it, list them."""
from __future__ import annotations

import datetime as dt

from flask import Blueprint, Response, current_app, request

from .. import db
from ..api import parse_flag
from ..auth import current_key_id
from ..errors import ApiError
from ..models import JOB_STATES, Job
from ..ratelimits import charge_job_urls, check_job_urls
from ..store import decode_cursor, encode_cursor
from . import results as job_results
from . import service
from .queue import QueueUnavailable

bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")
IDEMPOTENCY_HEADER = "Idempotency-Key"


@bp.post("")
def create():
    settings = current_app.config["SETTINGS"]
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("image_urls"), list) or not body["image_urls"]:
        raise ApiError("invalid_request", "send JSON {\"image_urls\": [...], \"callback_url\": ..., \"refresh\": false}")
    unknown = set(body) - {"image_urls", "callback_url", "refresh"}
    if unknown:
        raise ApiError("invalid_request", f"unknown fields: {', '.join(sorted(unknown))}")
    if len(body["image_urls"]) > settings.job_max_urls:
        raise ApiError("invalid_request", f"{len(body['image_urls'])} URLs; a job takes at most {settings.job_max_urls}: "
                       "split the list into several jobs", max_urls=settings.job_max_urls)
    if not isinstance(body.get("refresh", False), bool):
        raise ApiError("invalid_request", "refresh must be a boolean")
    callback = body.get("callback_url")
    if callback is not None and not isinstance(callback, str):
        raise ApiError("invalid_request", "callback_url must be a string")
    idempotency = _idempotency(body["image_urls"], callback, body.get("refresh", False))
    if idempotency is not None and (earlier := service.job_for_idempotency(db.session(), idempotency)):
        return _replayed(earlier)
    check_job_urls(len(body["image_urls"]))
    try:
        response = submit(body["image_urls"], callback, body.get("refresh", False), current_key_id(), idempotency)
    except service.IdempotencyKeyTaken:  # the same request, sent again while the first was being stored
        earlier = service.job_for_idempotency(db.session(), idempotency)
        if earlier is None:  # the first could not enqueue its job and took it back: so would this one
            settings = current_app.config["SETTINGS"]
            raise ApiError("queue_unavailable", "the job queue refused this job; nothing was stored",
                           headers={"Retry-After": str(settings.retry_after)})
        return _replayed(earlier)
    charge_job_urls(len(body["image_urls"]))  # only a job stored and enqueued uses quota
    return response


def _idempotency(urls: list, callback_url: str | None, refresh: bool) -> service.Idempotency | None:
    """The request's Idempotency-Key (a client retrying a submission whose answer it never got), if any."""
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= 200 or not key.isascii() or not key.isprintable():
        raise ApiError("invalid_request", f"{IDEMPOTENCY_HEADER} must be 1-200 printable ASCII characters")
    return service.Idempotency.of(key, current_key_id(), urls, callback_url, refresh)


def _replayed(job: Job):
    """The job an earlier request with the same Idempotency-Key made: 200, not a second job (no quota used)."""
    session = db.session()
    return service.summary(session, job), 200, {"Location": f"/v1/jobs/{job.id}", "Idempotent-Replayed": "true"}


def submit(urls: list, callback_url: str | None, refresh: bool, api_key_id: int | None = None,
           idempotency: service.Idempotency | None = None):
    """Store the job, then enqueue its batches. The job is committed first so that a worker can never
    receive a batch of a job it cannot read; if the broker refuses a batch, the job is deleted again
    (batches already sent find no job and do nothing): stored and enqueued, or not stored at all."""
    session = db.session()
    settings = current_app.config["SETTINGS"]
    job, queued = service.create_job(session, urls, callback_url, refresh, settings, api_key_id, idempotency)
    queue = current_app.extensions["job_queue"]
    try:
        for batch in service.batches(queued, settings.job_batch_size):
            queue.submit(job.id, batch)
    except QueueUnavailable as error:
        service.delete_job(session, job.id)
        raise ApiError("queue_unavailable", f"the job queue cannot be reached ({error}); nothing was stored",
                       headers={"Retry-After": str(settings.retry_after)})
    if not queued:  # nothing to do: every URL was malformed. Started (and finished) now, as any job is.
        service.start(session, job.id)
        session.commit()
        service.finish_if_complete(current_app._get_current_object(), session, job.id)
        session.refresh(job)  # the updates above were SQL statements: read what they stored
    return service.summary(session, job), 202, {"Location": f"/v1/jobs/{job.id}"}


@bp.get("")
def listing():
    """Jobs newest first, each with its summary: ?state= one state, ?mine=true only this API key's,
    ?limit= (1-100, default 20), ?cursor= the page after (next_cursor)."""
    session = db.session()
    state = request.args.get("state") or None
    if state is not None and state not in JOB_STATES:
        raise ApiError("invalid_request", f"state must be one of {', '.join(JOB_STATES)}")
    mine = parse_flag(request.args.get("mine"), "mine")
    if mine and current_key_id() is None:
        raise ApiError("invalid_request", "mine=true needs an API key")
    try:
        limit = int(request.args.get("limit", 20))
    except ValueError:
        raise ApiError("invalid_request", "limit must be an integer")
    if not 1 <= limit <= 100:
        raise ApiError("invalid_request", "limit must be between 1 and 100")
    cursor = request.args.get("cursor")
    jobs, next_position = service.list_jobs(session, state, current_key_id() if mine else None,
                                            decode_cursor(cursor, _job_position) if cursor else None, limit)
    return {"jobs": [service.summary(session, job) for job in jobs],
            "next_cursor": encode_cursor([next_position[0].isoformat(), next_position[1]]) if next_position else None}


def _job_position(value) -> tuple[dt.datetime, str]:
    created_at, job_id = value
    return dt.datetime.fromisoformat(created_at), str(job_id)


def _job(job_id: str) -> Job:
    return db.get_or_not_found(db.session(), Job, job_id, "job")


@bp.get("/<job_id>")
def status(job_id: str):
    session = db.session()
    job = _job(job_id)
    try:
        after = int(request.args.get("after", -1))
        limit = int(request.args.get("limit", 100))
    except ValueError:
        raise ApiError("invalid_request", "after and limit must be integers")
    if not 1 <= limit <= 1000:
        raise ApiError("invalid_request", "limit must be between 1 and 1000")
    page, next_after = service.outcomes(session, job_id, after, limit)
    return service.summary(session, job) | {"outcomes": page, "next_after": next_after}


@bp.get("/<job_id>/results")
def results(job_id: str):
    """Every URL's outcome with its analysis, streamed: NDJSON, or ?format=csv (app/jobs/results.py)."""
    _job(job_id)
    result_format = request.args.get("format", "ndjson")
    if result_format not in job_results.FORMATS:
        raise ApiError("invalid_request", f"format must be {' or '.join(job_results.FORMATS)}")
    lines, mimetype = job_results.FORMATS[result_format]
    db.session().close()  # the stream reads in a session of its own, closed when it ends, however it ends
    sessions = current_app.extensions["sessionmaker"]

    def stream():
        with sessions() as session:
            yield from lines(session, job_id)

    return Response(stream(), mimetype=mimetype,
                    headers={"Content-Disposition": f'attachment; filename="job-{job_id}.{result_format}"'})


@bp.delete("/<job_id>")
def cancel(job_id: str):
    session = db.session()
    _job(job_id)
    service.cancel(session, job_id)
    db.session().expire_all()
    return service.summary(session, _job(job_id))
