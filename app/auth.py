"""API keys: when API_KEYS_REQUIRED is on, every /v1 call presents a key (`Authorization: Bearer <key>`
or `X-API-Key: <key>`), else 401 `unauthorized`. Keys are stored as SHA-256 hashes only; `flask keys
create/list/revoke` manages them. Health, readiness and metrics stay open (metrics may take its own
token, METRICS_TOKEN)."""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets

import click
from flask import Flask, current_app, g, request, session
from sqlalchemy import select
from sqlalchemy.orm import Session

from . import db
from .errors import ApiError
from .models import ApiKey, utcnow

KEY_PREFIX = "ft_"


@dataclasses.dataclass(frozen=True)
class Client:
    """The key a request came with (plain values: nothing to reload after the session closes)."""
    id: int
    name: str
    prefix: str
    rate_limit: str
    job_url_quota: str


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(session: Session, name: str, rate_limit: str | None = None,
               job_url_quota: str | None = None) -> tuple[ApiKey, str]:
    """Returns the stored row and the key itself, which is shown once and never stored."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(name=name, prefix=key[:10], key_hash=hash_key(key), rate_limit=rate_limit,
                 job_url_quota=job_url_quota)
    session.add(row)
    session.commit()
    return row, key


def find_key(session: Session, key: str) -> ApiKey | None:
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
    if row is None or row.revoked_at is not None:
        return None
    return row


def presented_key() -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return request.headers.get("X-API-Key", "").strip() or None


def current_client() -> Client | None:
    return g.get("api_client")


def current_key_id() -> int | None:
    client = current_client()
    return client.id if client else None


def _unauthorized(detail: str) -> ApiError:
    return ApiError("unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="fashion-tagger"'})


def _client(row: ApiKey, settings) -> Client:
    return Client(row.id, row.name, row.prefix, row.rate_limit or settings.api_key_rate_limit,
                  row.job_url_quota or settings.api_key_job_url_quota)


SESSION_KEY_ID = "api_key_id"  # the catalogue page's signed session cookie holds the key's id, never the key


def session_client(settings) -> Client | None:
    """The key a catalogue page visitor signed in with, if it is still valid (a revoked key signs out)."""
    key_id = session.get(SESSION_KEY_ID)
    if not isinstance(key_id, int):
        return None
    row = db.session().get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        session.pop(SESSION_KEY_ID, None)
        return None
    return _client(row, settings)


def authenticate() -> None:
    """before_request: identify the client of a /v1 call (or refuse it), and of a catalogue page request
    (from its session; the page's own guard sends visitors without one to sign in). Both count against
    the key's rate limit."""
    settings = current_app.config["SETTINGS"]
    g.api_client = None
    if not settings.api_keys_required:
        return
    if request.blueprint == "catalogue":
        g.api_client = session_client(settings)
        return
    if not (request.path == "/v1" or request.path.startswith("/v1/")):
        return
    key = presented_key()
    if key is None:
        raise _unauthorized("send an API key as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
    row = find_key(db.session(), key)
    if row is None:
        raise _unauthorized("this API key is unknown or revoked")
    g.api_client = _client(row, settings)


def check_metrics_token() -> None:
    token = current_app.config["SETTINGS"].metrics_token
    if token and not hmac.compare_digest((presented_key() or "").encode(), token.encode()):
        raise _unauthorized("/metrics needs 'Authorization: Bearer <METRICS_TOKEN>'")


def init_app(app: Flask) -> None:
    app.before_request(authenticate)

    @app.cli.group("keys")
    def keys_group():
        """API key commands (keys are enforced when API_KEYS_REQUIRED is on)."""

    @keys_group.command("create")
    @click.argument("name")
    @click.option("--rate-limit", help=f"requests per key, e.g. 60/minute (default: API_KEY_RATE_LIMIT)")
    @click.option("--job-url-quota", help="job URLs per key, e.g. 10000/day (default: API_KEY_JOB_URL_QUOTA)")
    def create_command(name, rate_limit, job_url_quota):
        """Create a key for NAME and print it (only this once: it is stored hashed)."""
        from limits import parse

        for value in (rate_limit, job_url_quota):
            if value:
                try:
                    parse(value)
                except ValueError as error:
                    raise click.BadParameter(f"{value!r}: {error}")
        with app.app_context():
            row, key = create_key(db.session(), name, rate_limit, job_url_quota)
            click.echo(f"created key {row.id} ({row.prefix}...) for {name}:\n{key}")

    @keys_group.command("list")
    def list_command():
        """List keys (prefix, limits, revoked or not); the keys themselves are not stored."""
        settings = app.config["SETTINGS"]
        with app.app_context():
            rows = db.session().scalars(select(ApiKey).order_by(ApiKey.id)).all()
            click.echo(f"{'id':>4}  {'prefix':<12}{'name':<24}{'rate limit':<16}{'job URLs':<16}{'created':<21}revoked")
            for row in rows:
                click.echo(f"{row.id:>4}  {row.prefix + '...':<12}{row.name[:23]:<24}"
                           f"{row.rate_limit or settings.api_key_rate_limit:<16}"
                           f"{row.job_url_quota or settings.api_key_job_url_quota:<16}"
                           f"{row.created_at:%Y-%m-%d %H:%M:%S}  {row.revoked_at or '-'}")

    @keys_group.command("revoke")
    @click.argument("key_id", type=int)
    def revoke_command(key_id):
        """Revoke key KEY_ID: its next request gets 401."""
        with app.app_context():
            session = db.session()
            row = session.get(ApiKey, key_id)
            if row is None:
                raise click.ClickException(f"no key {key_id}")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                session.commit()
            click.echo(f"key {key_id} ({row.prefix}...) revoked")
