"""The /v1 API: analyse an image (URL or upload), read analyses, query the catalogue of items, label
items, delete images."""
from __future__ import annotations

import time

from flask import Blueprint, current_app, request

from . import db
from .analysis import analyse_images
from .auth import current_key_id
from .db import get_or_not_found
from .deletion import DeletedImage, delete_image, forget_url
from .errors import ApiError
from .fetch import FetchedImage, fetch
from .filters import ItemFilters, known_labels
from .labels import complete_labels, set_labels, training_path_counts, withdraw_labels
from .metrics import FETCH_FAILURES
from .models import Item
from .store import (analysis_json, get_analysis, image_json, latest_for_url, listed_item_json, query_items,
                    stored_item_json)

bp = Blueprint("v1", __name__, url_prefix="/v1")


def _settings():
    return current_app.config["SETTINGS"]


def parse_flag(value, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no", ""):
        return value.lower() in ("true", "1", "yes")
    raise ApiError("invalid_request", f"{name} must be a boolean")


def read_input(flag: str = "refresh") -> tuple[FetchedImage, bool, dict]:
    """(the image bytes, the boolean `flag` (refresh; store for searches), timings) from a JSON body with
    image_url or a multipart upload."""
    timings: dict = {}
    settings = _settings()
    if request.files:
        upload = request.files.get("image")
        if upload is None:
            raise ApiError("invalid_request", "multipart uploads carry the file in the field 'image'")
        data = upload.stream.read(settings.fetch_max_bytes + 1)
        if len(data) > settings.fetch_max_bytes:
            raise ApiError("too_large", f"the upload exceeds {settings.fetch_max_bytes} bytes")
        return FetchedImage(data, None, upload.mimetype), parse_flag(request.form.get(flag), flag), timings
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError("invalid_request", "send JSON {\"image_url\": ...} or a multipart upload with field 'image'")
    unknown = set(body) - {"image_url", flag}
    if unknown:
        raise ApiError("invalid_request", f"unknown fields: {', '.join(sorted(unknown))}")
    if "image_url" not in body:
        raise ApiError("invalid_request", "image_url is required")
    value = parse_flag(body.get(flag), flag)  # validated before any download
    start = time.perf_counter()
    try:
        fetched = fetch(body["image_url"], settings)
    except ApiError as error:
        FETCH_FAILURES.labels(error.code).inc()
        raise
    timings["fetch"] = round((time.perf_counter() - start) * 1000, 2)
    return fetched, value, timings


def analyse(fetched: FetchedImage, refresh: bool, timings: dict) -> tuple[dict, bool]:
    pipeline = current_app.extensions["pipeline"].load()
    outcome = analyse_images(db.session(), pipeline, _settings(), [fetched], refresh, [timings],
                             api_key_id=current_key_id())[0]
    if outcome.error:
        raise outcome.error
    return outcome.analysis, outcome.created


@bp.post("/analyses")
def create_analysis():
    fetched, refresh, timings = read_input()
    body, created = analyse(fetched, refresh, timings)
    return body, (201 if created else 200), ({"Location": f"/v1/analyses/{body['id']}"} if created else {})


@bp.get("/analyses/<int:analysis_id>")
def read_analysis(analysis_id: int):
    analysis = get_analysis(db.session(), analysis_id)
    if analysis is None:
        raise ApiError("not_found", f"no analysis {analysis_id}")
    return analysis_json(analysis)


def _url_argument() -> str:
    url = request.args.get("url")
    if not url:
        raise ApiError("invalid_request", "the url query parameter is required")
    return url


@bp.get("/images")
def read_image_by_url():
    url = _url_argument()
    analysis = latest_for_url(db.session(), url)
    if analysis is None:
        raise ApiError("not_found", "this URL has not been analysed")
    return analysis_json(analysis)


@bp.get("/items")
def list_items():
    query = ItemFilters.parse(request.args, known_labels(_settings().classifier_bundle))
    try:
        limit = int(request.args.get("limit", _settings().items_page_size))
    except ValueError:
        raise ApiError("invalid_request", "limit must be an integer")
    if not 1 <= limit <= 500:
        raise ApiError("invalid_request", "limit must be between 1 and 500")
    items, next_cursor = query_items(db.session(), query, request.args.get("cursor"), limit)
    return {"items": items, "next_cursor": next_cursor}


@bp.get("/items/<int:item_id>")
def read_item(item_id: int):
    """One stored item: its tags, colours, box and mask, labels, analysis and image."""
    session = db.session()
    return stored_item_json(session, get_or_not_found(session, Item, item_id, "item"))


@bp.put("/items/<int:item_id>/labels")
def label_item(item_id: int):
    """A person's labels for the item (replacing any it had): its tags from now on, and rows of every
    worker's neighbour vote (app/labels.py)."""
    return label_item_with(item_id, request.get_json(silent=True))


def label_item_with(item_id: int, given) -> dict:
    """Check `given` against the serving classifier and store it as the item's labels (shared with the
    catalogue page)."""
    classifier = current_app.extensions["pipeline"].load().classifier
    labels = complete_labels(classifier.taxonomy, given, training_path_counts(classifier))
    return listed_item_json(set_labels(db.session(), item_id, labels, current_key_id(), classifier.taxonomy))


@bp.delete("/items/<int:item_id>/labels")
def unlabel_item(item_id: int):
    """Withdraw the item's labels: its tags are the model's again."""
    return listed_item_json(withdraw_labels(db.session(), item_id))


@bp.get("/images/<int:image_id>")
def read_image(image_id: int):
    body = image_json(db.session(), image_id)
    if body is None:
        raise ApiError("not_found", f"no image {image_id}")
    return body


def delete_stored_image(image_id: int) -> DeletedImage:
    """Delete the image and everything stored about it (source URLs, analyses, items, embeddings,
    thumbnail); this process's similarity index forgets its items. Shared with the catalogue page."""
    deleted = delete_image(db.session(), image_id, _settings().thumbnail_dir)
    if deleted is None:
        raise ApiError("not_found", f"no image {image_id}")
    current_app.extensions["similarity"].forget(deleted.item_ids)
    return deleted


@bp.delete("/images/<int:image_id>")
def delete_image_by_id(image_id: int):
    return {"deleted_images": [delete_stored_image(image_id).json()], "kept_images": []}


@bp.delete("/images")
def forget_image_url():
    """Forget a URL: images no other URL refers to are deleted, the others keep their analyses."""
    url = _url_argument()
    forgotten = forget_url(db.session(), url, _settings().thumbnail_dir)
    if forgotten is None:
        raise ApiError("not_found", "no image was fetched from this URL")
    current_app.extensions["similarity"].forget(forgotten.item_ids)
    return forgotten.json()
