"""Jobs: create, process a batch of a job's URLs, finish (once) with a webhook, report, cancel."""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor

from flask import Flask
from sqlalchemy import case, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..analysis import analyse_images, analysis_key
from ..errors import ApiError
from ..fetch import fetch, parse_url
from ..models import Job, JobIdempotencyKey, JobUrl, iso_utc, utcnow
from ..store import find_analysis
from . import webhook

log = logging.getLogger(__name__)
FINAL_URL_STATES = ("done", "skipped", "failed", "cancelled")
URL_STATES = ("queued", "running", *FINAL_URL_STATES)



def is_transient(error: ApiError) -> bool:
    """Worth another try later: timeouts, server-side failures, models not loaded yet."""
    if error.code in ("fetch_timeout", "model_unavailable"):
        return True
    return error.code == "fetch_failed" and error.extra.get("upstream_status", 500) >= 500


@dataclasses.dataclass(frozen=True)
class Idempotency:
    """An Idempotency-Key as stored: whose it is, the key, and a fingerprint of the job it asked for."""
    scope: str
    key: str
    fingerprint: str

    @classmethod
    def of(cls, key: str, api_key_id: int | None, urls: list, callback_url: str | None, refresh: bool) -> "Idempotency":
        request = json.dumps({"image_urls": urls, "callback_url": callback_url, "refresh": refresh}, sort_keys=True)
        return cls("anonymous" if api_key_id is None else f"key-{api_key_id}", key,
                   hashlib.sha256(request.encode()).hexdigest())


def job_for_idempotency(session: Session, idempotency: Idempotency) -> Job | None:
    """The job an earlier request with this Idempotency-Key made, or None; idempotency_key_reused when
    that request asked for another job."""
    stored = session.scalar(select(JobIdempotencyKey).where(JobIdempotencyKey.scope == idempotency.scope,
                                                            JobIdempotencyKey.key == idempotency.key))
    if stored is None:
        return None
    if stored.fingerprint != idempotency.fingerprint:
        raise ApiError("idempotency_key_reused", f"Idempotency-Key {idempotency.key!r} came with other URLs or "
                       "options before: use a new key for a new job", job_id=stored.job_id)
    return session.get(Job, stored.job_id)


class IdempotencyKeyTaken(Exception):
    """Another request stored a job with this Idempotency-Key first (a concurrent retry)."""


def create_job(session: Session, urls: list, callback_url: str | None, refresh: bool, settings,
               api_key_id: int | None = None, idempotency: Idempotency | None = None) -> tuple[Job, list[int]]:
    """Store the job and its URLs (and its Idempotency-Key, in the same transaction); malformed URLs
    are recorded as failed at once. Returns the job and the ids of the URLs to enqueue."""
    if callback_url is not None:
        webhook.validate_callback_url(callback_url, settings)
    job = Job(id=uuid.uuid4().hex, state="queued", refresh=refresh, callback_url=callback_url, created_at=utcnow(),
              api_key_id=api_key_id)
    for position, url in enumerate(urls):
        row = JobUrl(position=position, url=url if isinstance(url, str) else repr(url), state="queued", attempts=0)
        try:
            parse_url(url)
        except ApiError as error:
            row.state, row.error_code, row.error_detail, row.updated_at = "failed", error.code, error.detail, utcnow()
        job.urls.append(row)
    session.add(job)
    if idempotency is not None:
        session.add(JobIdempotencyKey(scope=idempotency.scope, key=idempotency.key,
                                      fingerprint=idempotency.fingerprint, job_id=job.id, created_at=utcnow()))
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        if idempotency is None:
            raise
        raise IdempotencyKeyTaken(idempotency.key)
    return job, [row.id for row in job.urls if row.state == "queued"]


def delete_job(session: Session, job_id: str) -> None:
    """Undo create_job (its batches could not be enqueued)."""
    session.rollback()
    session.execute(delete(JobIdempotencyKey).where(JobIdempotencyKey.job_id == job_id))
    session.execute(delete(JobUrl).where(JobUrl.job_id == job_id))
    session.execute(delete(Job).where(Job.id == job_id))
    session.commit()


def batches(ids: list[int], size: int) -> list[list[int]]:
    return [ids[i:i + size] for i in range(0, len(ids), size)]


def process_urls(app: Flask, job_id: str, url_ids: list[int], worker: str | None = None) -> list[tuple[list[int], float]]:
    """Download, analyse and record a batch of a job's URLs. Safe to run again for the same batch (a
    redelivered task): only URLs not yet final are processed, and storage is idempotent.
    Returns the retries to schedule as (url ids, delay in seconds)."""
    settings = app.config["SETTINGS"]
    worker = worker or socket.gethostname()
    with app.extensions["sessionmaker"]() as session:
        job = session.get(Job, job_id)
        if job is None or job.state in ("cancelled", "done"):
            return []
        start(session, job_id)
        rows = session.scalars(select(JobUrl).where(JobUrl.id.in_(url_ids), JobUrl.state.in_(("queued", "running")))
                               .order_by(JobUrl.position)).all()
        rows = [row for row in rows if not _failed_if_worker_lost(row, settings)]
        for row in rows:
            row.state, row.worker, row.attempts, row.updated_at = "running", worker, row.attempts + 1, utcnow()
        session.commit()
        retries: dict[float, list[int]] = {}
        if rows:
            _process_rows(app, session, job, rows, settings, retries)
        finish_if_complete(app, session, job_id)
    return [(ids, delay) for delay, ids in retries.items()]


def _failed_if_worker_lost(row: JobUrl, settings) -> bool:
    """An open URL that has used all its attempts: a failed attempt is requeued only while attempts are
    left, so its last attempt never finished, the worker running it died (or its batch was lost). The
    image may well be what kills workers (a decoder crash, memory): failed, not tried for ever. Returns
    whether it was failed."""
    if row.attempts < settings.job_max_attempts:
        return False
    row.state, row.updated_at = "failed", utcnow()
    row.error_code = "worker_lost"
    row.error_detail = (f"attempt {row.attempts} of {settings.job_max_attempts} never finished: the worker "
                        "analysing the image stopped, or lost the database, before recording an outcome")
    return True


def start(session: Session, job_id: str) -> None:
    """A queued job is running from now on (started_at is set once, by whichever worker starts it)."""
    session.execute(update(Job).where(Job.id == job_id, Job.state == "queued").values(state="running", started_at=utcnow()))


def _download(url: str, settings):
    try:
        return fetch(url, settings)
    except ApiError as error:
        return error


def _process_rows(app, session, job, rows, settings, retries) -> None:
    with ThreadPoolExecutor(max_workers=min(8, len(rows))) as pool:  # overlap the network waits
        downloads = list(pool.map(lambda row: _download(row.url, settings), rows))
    fetched = [(row, d) for row, d in zip(rows, downloads) if not isinstance(d, ApiError)]
    results: dict[int, tuple] = {row.id: (None, d) for row, d in zip(rows, downloads) if isinstance(d, ApiError)}
    analysed_before: set[str] = set()
    if fetched:
        try:
            pipeline = app.extensions["pipeline"].load()
            analysed_before = {d.sha256 for _, d in fetched if find_analysis(session, d.sha256, analysis_key(pipeline, d, settings))}
            outcomes = analyse_images(session, pipeline, settings, [d for _, d in fetched], job.refresh,
                                      api_key_id=job.api_key_id)
            results.update({row.id: (o, o.error) for (row, _), o in zip(fetched, outcomes)})
        except ApiError as error:  # models unavailable: every fetched URL of the batch is retried
            results.update({row.id: (None, error) for row, _ in fetched})
    to_retry: list[JobUrl] = []
    for row in rows:
        outcome, error = results[row.id]
        row.updated_at = utcnow()
        if error is None:
            # Skipped: found in storage on a first attempt, so analysed before this job. Found on a later
            # attempt, it was most likely stored by this job's earlier attempt that died: done.
            sha256 = next(d.sha256 for r, d in fetched if r.id == row.id)
            skipped = sha256 in analysed_before and row.attempts == 1 and not job.refresh
            row.state = "skipped" if skipped else "done"
            row.analysis_id, row.error_code, row.error_detail = outcome.analysis["id"], None, None
        elif is_transient(error) and row.attempts < settings.job_max_attempts:
            row.error_code, row.error_detail = error.code, error.detail  # queued again, or cancelled: below
            to_retry.append(row)
        else:
            row.state, row.error_code, row.error_detail = "failed", error.code, error.detail
    if to_retry and requeue_unless_cancelled(session, job.id, [row.id for row in to_retry]):
        for row in to_retry:
            delay = settings.job_retry_backoff * 2 ** (row.attempts - 1)
            retries.setdefault(delay, []).append(row.id)
    session.commit()


def requeue_unless_cancelled(session: Session, job_id: str, url_ids: list[int]) -> bool:
    """Put URLs that failed transiently back in the queue; but if their job was cancelled while they were
    in flight, cancel them instead (cancel() sweeps only queued URLs, so one requeued after it would stay
    queued for good). Either way they are stamped as changed now. Returns whether they were requeued.
    Commits nothing: the caller does."""
    # cancel() must not slip in between reading the job's state and writing these URLs'. PostgreSQL: lock
    # the job's row, so a cancel() has committed already (and is seen) or waits for this transaction (and
    # then sweeps these URLs as queued). SQLite ignores FOR UPDATE, but its UPDATE below holds the database's
    # write lock until commit, so the state it reads in its subquery is the latest.
    session.execute(select(Job.id).where(Job.id == job_id).with_for_update())
    job_cancelled = select(Job.id).where(Job.id == job_id, Job.state == "cancelled").exists()
    session.execute(update(JobUrl).where(JobUrl.id.in_(url_ids))
                    .values(state=case((job_cancelled, "cancelled"), else_="queued"), updated_at=utcnow())
                    .execution_options(synchronize_session="fetch"))
    return session.scalar(select(Job.state).where(Job.id == job_id)) != "cancelled"


def finish_if_complete(app: Flask, session: Session, job_id: str) -> None:
    open_urls = select(JobUrl.id).where(JobUrl.job_id == job_id, JobUrl.state.in_(("queued", "running"))).exists()
    finished = session.execute(update(Job).where(Job.id == job_id, Job.state == "running", ~open_urls)
                               .values(state="done", finished_at=utcnow()))
    session.commit()
    if finished.rowcount == 1:  # exactly one worker wins this update, and only it sends the webhook
        send_callback(app, session, job_id)


def send_callback(app: Flask, session: Session, job_id: str) -> None:
    job = session.get(Job, job_id)
    if not job.callback_url:
        return
    delivered, attempts = webhook.deliver(job.callback_url, summary(session, job), app.config["SETTINGS"])
    job.callback_state, job.callback_attempts = ("delivered" if delivered else "failed"), attempts
    session.commit()


def counts(session: Session, job_id: str) -> dict[str, int]:
    rows = session.execute(select(JobUrl.state, func.count()).where(JobUrl.job_id == job_id).group_by(JobUrl.state))
    found = dict(rows.all())
    return {state: found.get(state, 0) for state in URL_STATES}


def summary(session: Session, job: Job) -> dict:
    tally = counts(session, job.id)
    total = sum(tally.values())
    finished = sum(tally[s] for s in FINAL_URL_STATES)
    end = job.finished_at or utcnow()
    errors = dict(session.execute(select(JobUrl.error_code, func.count()).where(
        JobUrl.job_id == job.id, JobUrl.state == "failed").group_by(JobUrl.error_code)).all())
    return {
        "id": job.id, "state": job.state, "total": total, "counts": tally,
        "progress": round(finished / total, 4) if total else 1.0, "errors": errors,
        "created_at": iso_utc(job.created_at),
        "started_at": iso_utc(job.started_at),
        "finished_at": iso_utc(job.finished_at),
        "elapsed_s": round((end - (job.started_at or job.created_at)).total_seconds(), 3),
        "callback": {"url": job.callback_url, "state": job.callback_state, "attempts": job.callback_attempts}
        if job.callback_url else None,
        "results_url": f"/v1/jobs/{job.id}/results",  # every URL's analysis in one download (app/jobs/results.py)
    }


def list_jobs(session: Session, state: str | None, api_key_id: int | None, before: tuple[dt.datetime, str] | None,
              limit: int) -> tuple[list[Job], tuple[dt.datetime, str] | None]:
    """Jobs newest first (keyset on created_at, id), of one state and one key when given; and the position
    the next page starts before (None: no more)."""
    query = select(Job).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
    if state is not None:
        query = query.where(Job.state == state)
    if api_key_id is not None:
        query = query.where(Job.api_key_id == api_key_id)
    if before is not None:
        created_at, job_id = before
        query = query.where((Job.created_at < created_at) | ((Job.created_at == created_at) & (Job.id < job_id)))
    jobs = session.scalars(query).all()
    last = jobs[limit - 1] if len(jobs) > limit else None
    return jobs[:limit], ((last.created_at, last.id) if last else None)


def outcomes(session: Session, job_id: str, after: int, limit: int) -> tuple[list[dict], int | None]:
    rows = session.scalars(select(JobUrl).where(JobUrl.job_id == job_id, JobUrl.position > after)
                           .order_by(JobUrl.position).limit(limit + 1)).all()
    return [outcome_json(r) for r in rows[:limit]], (rows[limit - 1].position if len(rows) > limit else None)


def outcome_json(row: JobUrl) -> dict:
    """One URL of a job as its status and its results list it."""
    return {"position": row.position, "url": row.url, "state": row.state, "analysis_id": row.analysis_id,
            "error": {"code": row.error_code, "detail": row.error_detail} if row.error_code and row.state == "failed"
            else None, "attempts": row.attempts}


def stalled_jobs(session: Session, quiet_for: dt.timedelta, job_ids: list[str] | None = None) -> list[Job]:
    """Unfinished jobs with URLs still open and nothing changed for `quiet_for`: no URL of theirs
    started, finished or was requeued in that time. A job is left like that when the batches meant
    for its open URLs are gone: an embedded queue's process died or was recycled, or Redis lost its
    queue. Oldest first; only among `job_ids` when given."""
    cutoff = utcnow() - quiet_for
    open_urls = select(JobUrl.id).where(JobUrl.job_id == Job.id, JobUrl.state.in_(("queued", "running"))).exists()
    recent_change = select(JobUrl.id).where(JobUrl.job_id == Job.id, JobUrl.updated_at >= cutoff).exists()
    query = (select(Job).where(Job.state.in_(("queued", "running")), Job.created_at < cutoff, open_urls,
                               ~recent_change).order_by(Job.created_at, Job.id))
    if job_ids is not None:
        query = query.where(Job.id.in_(job_ids))
    return session.scalars(query).all()


def resume(session: Session, job_id: str, quiet_for: dt.timedelta) -> list[int]:
    """Put a stalled job's open URLs (queued, or running on a worker that died) back in the queue, stamped
    now so that another resume within `quiet_for` leaves them alone. Returns the ids to enqueue: none if the
    job is no longer stalled (another process resumed it first, or it moved) or was cancelled meanwhile.
    Enqueueing a URL whose batch was not lost after all costs little: whichever batch comes second finds
    it final and does nothing."""
    # Two processes resuming at once: on PostgreSQL the second waits on the job's row and then finds it
    # stamped, no longer stalled. (SQLite ignores FOR UPDATE: both may enqueue, which costs only a lookup.)
    session.execute(select(Job.id).where(Job.id == job_id).with_for_update())
    if not stalled_jobs(session, quiet_for, [job_id]):
        session.commit()
        return []
    ids = session.scalars(select(JobUrl.id).where(JobUrl.job_id == job_id, JobUrl.state.in_(("queued", "running")))
                          .order_by(JobUrl.position)).all()
    requeued = requeue_unless_cancelled(session, job_id, ids)  # stamps them now
    session.commit()
    return ids if requeued else []


def cancel(session: Session, job_id: str) -> bool:
    changed = session.execute(update(Job).where(Job.id == job_id, Job.state.in_(("queued", "running")))
                              .values(state="cancelled", finished_at=utcnow())).rowcount
    session.execute(update(JobUrl).where(JobUrl.job_id == job_id, JobUrl.state == "queued")
                    .values(state="cancelled", updated_at=utcnow()))
    session.commit()
    return bool(changed)
