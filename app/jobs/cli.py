"""`flask ingest FILE`, `flask retag` and `flask jobs status|results|list|resume` for operators."""
from __future__ import annotations

import csv
import datetime as dt
import json
import time
from pathlib import Path

import click
from flask import Flask
from tqdm import tqdm

URL_COLUMNS = ("url", "image_url", "imageurl", "link", "image")


def read_urls(path: Path) -> list[str]:
    """One URL per line, or a CSV with a url/image_url/link column."""
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        column = next((c for c in reader.fieldnames or [] if c.strip().lower() in URL_COLUMNS), None)
        if column is None:
            raise click.ClickException(f"{path}: no URL column (one of {', '.join(URL_COLUMNS)})")
        return [row[column].strip() for row in reader if row[column] and row[column].strip()]
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def finished_urls(summary: dict) -> int:
    return summary["total"] - summary["counts"]["queued"] - summary["counts"]["running"]


def print_summary(summary: dict) -> None:
    click.echo(f"\njob {summary['id']}: {summary['state']} in {summary['elapsed_s']:.1f} s")
    click.echo(f"{'outcome':<12}{'urls':>8}")
    for state, count in summary["counts"].items():
        click.echo(f"{state:<12}{count:>8}")
    for code, count in sorted(summary["errors"].items(), key=lambda kv: -kv[1]):
        click.echo(f"  failed: {code:<24}{count:>6}")


def init_app(app: Flask) -> None:
    from .. import db
    from ..errors import ApiError
    from ..models import JOB_STATES, Job
    from . import service
    from .api import submit
    from .queue import QueueUnavailable
    from .stall_watch import resume_stalled

    def submit_and_follow(urls: list[str], callback_url, refresh: bool, wait: bool) -> None:
        """Submit URLs as jobs of at most JOB_MAX_URLS each; with `wait` (always with no broker: the jobs
        run in this process) follow them with a progress bar and print each job's summary."""
        limit = app.config["SETTINGS"].job_max_urls
        embedded = not app.config["SETTINGS"].broker_url

        with app.test_request_context():
            try:
                ids = [submit(urls[i:i + limit], callback_url, refresh)[0]["id"] for i in range(0, len(urls), limit)]
            except ApiError as error:  # e.g. queue_unavailable: say so, no traceback
                raise click.ClickException(f"{error.code}: {error.detail}")
            click.echo(f"submitted {len(urls)} URLs as job(s) {', '.join(ids)}")
            if wait or embedded:
                follow(ids, "ingesting")

    def follow(ids: list[str], description: str) -> None:
        """A progress bar over these jobs' URLs until every job is done or cancelled; then their summaries."""
        session = db.session()
        summaries = [service.summary(session, session.get(Job, i)) for i in ids]
        with tqdm(total=sum(s["total"] for s in summaries), desc=description, unit="url") as bar:
            while True:
                session.expire_all()
                summaries = [service.summary(session, session.get(Job, i)) for i in ids]
                bar.update(sum(finished_urls(s) for s in summaries) - bar.n)
                if all(s["state"] in ("done", "cancelled") for s in summaries):
                    break
                time.sleep(0.5)
        for summary in summaries:
            print_summary(summary)

    @app.cli.command("ingest")
    @click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--callback-url")
    @click.option("--refresh", is_flag=True)
    @click.option("--wait/--no-wait", default=True, help="follow the job with a progress bar (always with no broker)")
    def ingest(source: Path, callback_url, refresh, wait):
        """Submit the URLs in SOURCE as jobs of at most JOB_MAX_URLS each."""
        submit_and_follow(read_urls(source), callback_url, refresh, wait)

    @app.cli.command("retag")
    @click.option("--dry-run", is_flag=True, help="only count the stale images; submit nothing")
    @click.option("--callback-url")
    @click.option("--wait/--no-wait", default=True, help="follow the jobs with a progress bar (always with no broker)")
    def retag(dry_run, callback_url, wait):
        """Analyse again, with the serving model bundles, every stored image whose current analysis other
        bundles made (app/retag.py): their source URLs are submitted as batch jobs."""
        from .. import retag as retag_module

        try:
            pipeline = app.extensions["pipeline"].load(notify=False)  # the serving analysis key
        except ApiError as error:  # model_unavailable: say so, no traceback
            raise click.ClickException(f"{error.code}: {error.detail}")
        with app.app_context():
            plan = retag_module.plan(db.session(), pipeline.bundle_key)
        click.echo(f"serving analysis key: {plan.serving_key}")
        click.echo(f"images up to date: {plan.current}; stale: {plan.stale}")
        for key, count in plan.stale_by_key.most_common():
            click.echo(f"  {count:>8}  analysed as {key}")
        if plan.without_url:
            click.echo(f"stale images stored from uploads (no URL to fetch again; upload them again): "
                       f"{len(plan.without_url)}")
        if dry_run or not plan.urls:
            click.echo("nothing submitted" + (" (--dry-run)" if dry_run and plan.urls else ""))
            return
        submit_and_follow(plan.urls, callback_url, False, wait)

    @app.cli.group("jobs")
    def jobs_group():
        """Batch job commands."""

    @jobs_group.command("status")
    @click.argument("job_id")
    def status(job_id):
        with app.app_context():
            session = db.session()
            job = session.get(Job, job_id)
            if job is None:
                raise click.ClickException(f"no job {job_id}")
            print_summary(service.summary(session, job))
            click.echo(json.dumps(service.summary(session, job)["callback"]))

    @jobs_group.command("resume")
    @click.argument("job_ids", nargs=-1)
    @click.option("--quiet-for", type=click.FloatRange(0), default=600, show_default=True,
                  help="seconds a job must have gone without any URL changing to count as stalled")
    @click.option("--wait/--no-wait", default=True, help="follow the jobs with a progress bar (always with no broker)")
    def resume(job_ids, quiet_for, wait):
        """Enqueue again the open URLs of stalled jobs (all of them, or the JOB_IDS given): jobs whose
        batches were lost, e.g. with an embedded queue whose process died or was recycled, or a Redis
        that lost its queue. URLs still being worked on are not stalled: --quiet-for guards them."""
        embedded = not app.config["SETTINGS"].broker_url
        with app.app_context():
            session = db.session()
            missing = [i for i in job_ids if session.get(Job, i) is None]
            if missing:
                raise click.ClickException(f"no job {', '.join(missing)}")
            try:
                resumed = resume_stalled(app, session, dt.timedelta(seconds=quiet_for), list(job_ids) or None)
            except QueueUnavailable as error:  # the URLs stay open: run it again later
                raise click.ClickException(f"queue_unavailable: {error}")
            if not resumed:
                click.echo(f"no stalled job (unfinished, nothing changed for {quiet_for:g} s)")
                return
            for job_id, count in resumed.items():
                click.echo(f"job {job_id}: {count} URL{'s' if count != 1 else ''} enqueued again")
            if wait or embedded:
                follow(list(resumed), "resuming")

    @jobs_group.command("results")
    @click.argument("job_id")
    @click.option("--format", "result_format", type=click.Choice(["ndjson", "csv"]), default="ndjson",
                  show_default=True)  # results.FORMATS
    @click.option("--out", type=click.File("w", encoding="utf-8"), default="-", help="a file (default: stdout)")
    def results(job_id, result_format, out):
        """Every URL's outcome with the analysis it produced (what GET /v1/jobs/<id>/results streams)."""
        from . import results as job_results

        with app.app_context():
            session = db.session()
            if session.get(Job, job_id) is None:
                raise click.ClickException(f"no job {job_id}")
            lines, _ = job_results.FORMATS[result_format]
            for text in lines(session, job_id):
                out.write(text)

    @jobs_group.command("list")
    @click.option("--state", type=click.Choice(JOB_STATES))
    @click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
    def listing(state, limit):
        """The newest jobs: id, state, progress, failures, when made."""
        with app.app_context():
            session = db.session()
            jobs, _ = service.list_jobs(session, state, None, None, limit)
            click.echo(f"{'job':<34}{'state':<11}{'urls':>7}{'done':>8}{'failed':>8}  created")
            for job in jobs:
                summary = service.summary(session, job)
                click.echo(f"{job.id:<34}{job.state:<11}{summary['total']:>7}{finished_urls(summary):>8}"
                           f"{summary['counts']['failed']:>8}  {summary['created_at']}")
