"""GET /v1/changes: the changes feed (app/changes.py), for clients that keep a copy of the stored tags.

    GET /v1/changes?cursor=&limit=&expand=   the entries after `cursor` (none: from the first), oldest first
    GET /v1/changes?from=now                 no entries, and a cursor after every entry there is now

A client copying the catalogue either reads the feed from its start (it holds every analysis ever stored,
those from before the feed existed included) or takes `from=now` first, then lists `/v1/items`, then
reads on from that cursor. `caught_up: true` says the page reached the end: poll again later.
"""
from __future__ import annotations

from flask import Blueprint, request

from . import db
from .api import parse_flag
from .changes import latest_cursor, read_page
from .errors import ApiError

bp = Blueprint("changes", __name__, url_prefix="/v1")

MAX_LIMIT = 500


@bp.get("/changes")
def list_changes():
    start = request.args.get("from")
    if start is not None:
        if start != "now":
            raise ApiError("invalid_request", "from takes only 'now' (a cursor after every entry there is now)")
        if request.args.get("cursor"):
            raise ApiError("invalid_request", "give either from=now or a cursor, not both")
        return {"changes": [], "next_cursor": latest_cursor(db.session()), "caught_up": True}
    try:
        limit = int(request.args.get("limit", 100))
    except ValueError:
        raise ApiError("invalid_request", "limit must be an integer")
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError("invalid_request", f"limit must be between 1 and {MAX_LIMIT}")
    expand = parse_flag(request.args.get("expand", "true"), "expand")
    return read_page(db.session(), request.args.get("cursor"), limit, expand)
