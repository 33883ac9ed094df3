"""Operational endpoints: liveness, readiness, metrics, the OpenAPI document and its docs page."""
from __future__ import annotations

from flask import Blueprint, Response, current_app
from sqlalchemy import text

from .auth import check_metrics_token
from .jobs.queue import QueueUnavailable
from .metrics import render
from .openapi import DOCS_PAGE, spec

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz():
    return {"status": "ok"}


@bp.get("/readyz")
def readyz():
    checks = {}
    try:
        with current_app.extensions["engine"].connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as error:  # noqa: BLE001 - reported, not raised
        checks["database"] = f"unavailable: {type(error).__name__}"
    if current_app.config["SETTINGS"].broker_url:
        try:
            current_app.extensions["job_queue"].check()
            checks["broker"] = "ok"
        except QueueUnavailable as error:
            checks["broker"] = f"unavailable: {str(error)[:200]}"
    holder = current_app.extensions["pipeline"]
    checks["models"] = "ok" if holder.ready else (f"error: {holder.error}" if holder.error else "loading")
    ready = all(v == "ok" for v in checks.values())
    body = {"status": "ready" if ready else "not ready", "checks": checks}
    if ready:
        return body, 200
    down = [name for name, value in checks.items() if value != "ok"]
    return body | {"unavailable": down}, 503, {"Retry-After": str(current_app.config["SETTINGS"].retry_after)}


@bp.get("/metrics")
def metrics():
    check_metrics_token()
    body, content_type = render()
    return Response(body, content_type=content_type)


@bp.get("/openapi.json")
def openapi():
    return spec()


@bp.get("/docs")
def docs():
    return Response(DOCS_PAGE, mimetype="text/html")
