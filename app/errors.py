"""Errors as application/problem+json (RFC 9457), each with a stable `code`."""
from __future__ import annotations

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

# code -> (HTTP status, title). Clients switch on `code`; it never changes meaning.
CODES = {
    "invalid_request": (400, "The request is malformed"),
    "invalid_url": (400, "The URL is not a valid http(s) URL"),
    "blocked_address": (422, "The URL points to an address that may not be fetched"),
    "fetch_failed": (502, "The image could not be downloaded"),
    "fetch_timeout": (504, "The image server did not answer in time"),
    "too_large": (413, "The image file is larger than allowed"),
    "unsupported_media_type": (415, "The file is not an image format this service reads"),
    "not_an_image": (422, "The file could not be decoded as an image"),
    "image_too_large": (413, "The image has more pixels than allowed"),
    "model_unavailable": (503, "The models are not loaded"),
    "database_unavailable": (503, "The database cannot be reached; retry later"),
    "queue_unavailable": (503, "The job queue cannot be reached; retry later"),
    "unauthorized": (401, "A valid API key is required"),
    "rate_limited": (429, "Too many requests for this API key; retry later"),
    "job_exceeds_quota": (413, "The job has more URLs than the API key's job-URL quota allows in a whole window; "
                                "split it into smaller jobs"),
    "embedding_unavailable": (409, "The item has no embedding from the serving classifier; run `flask embeddings backfill`"),
    "unknown_label": (422, "The label is not one the serving classifier knows"),
    "inconsistent_labels": (422, "The category labels name no path of the serving classifier's taxonomy"),
    "idempotency_key_reused": (422, "The Idempotency-Key was sent before with another request"),
    "cursor_expired": (410, "The changes feed no longer holds the entries after this cursor (pruned)"),
    "worker_lost": (500, "The worker analysing the image stopped on its last attempt (a job URL's error)"),
    "not_found": (404, "No such resource"),
    "method_not_allowed": (405, "Method not allowed"),
    "internal_error": (500, "Internal error"),
}


class ApiError(Exception):
    def __init__(self, code: str, detail: str = "", *, headers: dict | None = None, **extra):
        super().__init__(f"{code}: {detail}")
        self.code, self.detail, self.extra, self.headers = code, detail, extra, headers or {}
        self.status, self.title = CODES[code]

    def response(self):
        body = {"type": f"https://fashion-tagger.dev/problems/{self.code}", "title": self.title,
                "status": self.status, "code": self.code, "detail": self.detail or self.title, **self.extra}
        response = jsonify(body)
        response.status_code = self.status
        response.mimetype = "application/problem+json"
        response.headers.update(self.headers)
        return response


def database_unavailable(error: Exception, retry_after: int) -> ApiError:
    return ApiError("database_unavailable", f"the database cannot be reached ({type(error).__name__})",
                    headers={"Retry-After": str(retry_after)})


def is_outage(error: Exception) -> bool:
    """A database error that says the server is unreachable or gone, not that the query is wrong."""
    from sqlalchemy import exc

    if isinstance(error, (exc.OperationalError, exc.InterfaceError, exc.TimeoutError)):
        return True
    return isinstance(error, exc.DBAPIError) and error.connection_invalidated


def register(app: Flask) -> None:
    app.register_error_handler(ApiError, lambda error: error.response())

    def http_error(error: HTTPException):
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(error.code or 500, "invalid_request")
        if (error.code or 500) >= 500:
            code = "internal_error"
        methods = getattr(error, "valid_methods", None)  # a 405 says which methods the resource takes (RFC 9110)
        allow = {"Allow": ", ".join(methods)} if methods else None
        return ApiError(code, error.description or "", headers=allow).response()

    app.register_error_handler(HTTPException, http_error)

    def unexpected(error: Exception):
        if is_outage(error):  # tell the client to retry, not that we have a bug
            app.logger.warning("database unavailable: %s", error)
            return database_unavailable(error, app.config["SETTINGS"].retry_after).response()
        app.logger.exception("unhandled error")
        return ApiError("internal_error", "unexpected error; see the server log with this request id").response()

    app.register_error_handler(Exception, unexpected)
