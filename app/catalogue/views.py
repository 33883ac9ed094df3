"""/catalogue: the grid (the /v1/items filters), an analysis' detail (boxes and masks over the image,
tags with confidences, colour swatches, similar items, a form to correct the selected item's tags, a
link to delete the image through a confirmation page), an upload box, thumbnails and mask overlays.

Access: with API_KEYS_REQUIRED off the page is as open as the API. With it on, a visitor signs in once
with an API key (/catalogue/login); the server keeps only the key's id in a signed, HttpOnly,
SameSite=Lax session cookie, so no key is ever in a page, and a revoked key is signed out on its next
request. Page requests count against that key's rate limit (thumbnails and overlays do not) and
uploads are recorded as made by it. Forms carry a CSRF token tied to the session.
"""
from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from flask import (Blueprint, Flask, Response, current_app, flash, redirect, render_template, request, session,
                   url_for)
from sqlalchemy import func, select

from .. import db, thumbnails
from ..auth import SESSION_KEY_ID, current_client, find_key
from ..errors import ApiError
from ..fetch import FetchedImage
from ..filters import TASK_FILTERS, ItemFilters, known_labels, serving_labels
from ..models import Analysis, Item, Thumbnail
from ..models_api import tag_precision
from ..store import get_analysis, image_json, item_json, query_item_rows
from . import overlays

bp = Blueprint("catalogue", __name__, url_prefix="/catalogue", template_folder="templates",
               static_folder="static")
OPEN_ENDPOINTS = ("catalogue.login", "catalogue.static")
NOT_RATE_LIMITED = ("thumbnail", "mask")  # a grid page loads dozens: counted as one page view
TASK_ORDER = ("gender", "masterCategory", "subCategory", "articleType", "baseColour", "season", "usage")


def _settings():
    return current_app.config["SETTINGS"]


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(24)
    return session["csrf"]


@bp.before_request
def guard():
    if request.method == "POST":
        sent = request.form.get("csrf_token", "")
        if not hmac.compare_digest(sent.encode(), session.get("csrf", "").encode()) or not sent:
            raise ApiError("invalid_request", "the form's CSRF token is missing or stale; reload the page")
    if not _settings().api_keys_required or request.endpoint in OPEN_ENDPOINTS or current_client() is not None:
        return None
    if request.endpoint in ("catalogue.thumbnail", "catalogue.mask"):
        raise ApiError("unauthorized", "sign in at /catalogue/login")
    return redirect(url_for("catalogue.login", next=request.full_path if request.method == "GET" else None))


@bp.errorhandler(ApiError)
def page_error(error: ApiError):
    if request.endpoint in ("catalogue.thumbnail", "catalogue.mask"):
        return error.response()
    return render_template("catalogue/error.html", error=error), error.status, error.headers


@bp.route("/login", methods=["GET", "POST"])
def login():
    message = None
    if request.method == "POST":
        row = find_key(db.session(), request.form.get("api_key", "").strip())
        if row is not None:
            session.clear()
            session[SESSION_KEY_ID] = row.id
            session.permanent = True
            target = request.args.get("next") or ""
            # Only a path on this site: an open redirect would hand the session to anyone's page.
            return redirect(target if target.startswith("/catalogue") else url_for("catalogue.index"))
        message = "That API key is unknown or revoked."
    return render_template("catalogue/login.html", message=message,
                           keys_required=_settings().api_keys_required), (401 if message else 200)


@bp.post("/logout")
def logout():
    session.clear()
    return redirect(url_for("catalogue.login" if _settings().api_keys_required else "catalogue.index"))


def _with_thumbnail(image_ids) -> set[int]:
    ids = list(set(image_ids))
    if not ids:
        return set()
    return set(db.session().scalars(select(Thumbnail.image_id).where(Thumbnail.image_id.in_(ids))))


@bp.get("")
def index():
    filters = ItemFilters.parse(request.args, known_labels(_settings().classifier_bundle))
    rows, next_cursor = query_item_rows(db.session(), filters, request.args.get("cursor"), _settings().catalogue_page_size)
    return render_template("catalogue/grid.html", items=rows, filters=filters, next_cursor=next_cursor,
                           with_thumbnail=_with_thumbnail(i.analysis.image_id for i in rows),
                           labels=serving_labels(_settings().classifier_bundle), task_filters=TASK_FILTERS)


@bp.get("/analyses/<int:analysis_id>")
def detail(analysis_id: int):
    from ..search_api import similar_to_item

    analysis = get_analysis(db.session(), analysis_id)
    if analysis is None:
        raise ApiError("not_found", f"no analysis {analysis_id}")
    items = [item_json(item) for item in analysis.items]
    # The image's current analysis, when this one was superseded by newer model bundles (app.models).
    current_id = db.session().scalar(select(func.max(Analysis.id)).where(Analysis.image_id == analysis.image_id))
    selected_id = request.args.get("item", type=int) or items[0]["id"]
    if selected_id not in {item["id"] for item in items}:
        raise ApiError("not_found", f"analysis {analysis_id} has no item {selected_id}")
    similar, similar_error = None, None
    try:
        similar = similar_to_item(selected_id, 12, ItemFilters({}))
    except ApiError as error:
        similar_error = error.detail
    similar_items = [hit["item"] for hit in similar["results"]] if similar else []
    # Beside each tag, how often the serving classifier's tag of that label was right on held-out
    # catalogue thumbnails: only for tags that classifier made (none while the models cannot load).
    try:
        pipeline = current_app.extensions["pipeline"].load()
    except ApiError:
        pipeline = None
    precision = (tag_precision(pipeline) if pipeline is not None
                 and analysis.bundles.get("classifier") == pipeline.bundles["classifier"] else {})
    return render_template("catalogue/detail.html", analysis=analysis, items=items, selected_id=selected_id,
                           superseded_by=current_id if current_id != analysis.id else None,
                           similar=similar, similar_error=similar_error, task_order=TASK_ORDER, precision=precision,
                           # the labels a person may give: the serving classifier's (no form while it cannot load)
                           choices=pipeline.classifier.taxonomy.labels if pipeline is not None else {},
                           with_thumbnail=_with_thumbnail([analysis.image_id, *(i["image"]["id"] for i in similar_items)]),
                           colour_of=overlays.colour_of)


@bp.post("/upload")
def upload():
    from ..api import analyse

    file = request.files.get("image")
    if file is None or not file.filename:
        raise ApiError("invalid_request", "choose an image file to upload")
    limit = _settings().fetch_max_bytes
    data = file.stream.read(limit + 1)
    if len(data) > limit:
        raise ApiError("too_large", f"the upload exceeds {limit} bytes")
    body, _created = analyse(FetchedImage(data, None, file.mimetype), False, {})
    return redirect(url_for("catalogue.detail", analysis_id=body["id"]))


@bp.post("/items/<int:item_id>/labels")
def label(item_id: int):
    """The detail page's "Correct tags" form: the labels chosen (tasks left on "as tagged" say nothing),
    or withdraw them, through the same code as PUT/DELETE /v1/items/<id>/labels."""
    from ..api import label_item_with, unlabel_item

    if request.form.get("withdraw"):
        item = unlabel_item(item_id)
        flash(f"Item {item_id}: labels withdrawn, its tags are the model's again.")
    else:
        chosen = {task: request.form[task] for task in TASK_ORDER if request.form.get(task)}
        if not chosen:
            raise ApiError("invalid_request", "choose at least one label (or withdraw the labels)")
        item = label_item_with(item_id, chosen)
        flash(f"Item {item_id} labelled: " + ", ".join(f"{t} {v}" for t, v in item["labels"]["tags"].items()) + ".")
    return redirect(url_for("catalogue.detail", analysis_id=item["analysis_id"], item=item_id))


@bp.get("/images/<int:image_id>/delete")
def confirm_delete(image_id: int):
    """What a delete would remove, and the form that does it (a page, not a script's dialog)."""
    database = db.session()
    image = image_json(database, image_id)
    if image is None:
        raise ApiError("not_found", f"no image {image_id}")
    analysis_ids = [a["id"] for a in image["analyses"]]
    items = database.scalar(select(func.count()).select_from(Item).where(Item.analysis_id.in_(analysis_ids))) if analysis_ids else 0
    urls = [source["url"] for source in image["urls"]]
    back_to = request.args.get("analysis", type=int)
    back = (url_for("catalogue.detail", analysis_id=back_to) if back_to in analysis_ids else url_for("catalogue.index"))
    return render_template("catalogue/delete.html", image=image, analyses=len(analysis_ids), items=items, urls=urls,
                           back=back, has_thumbnail=bool(_with_thumbnail([image_id])))


@bp.post("/images/<int:image_id>/delete")
def delete(image_id: int):
    from ..api import delete_stored_image

    deleted = delete_stored_image(image_id)
    flash(f"Deleted image {image_id}: {deleted.analyses} analyses, {len(deleted.item_ids)} items.")
    return redirect(url_for("catalogue.index"))


@bp.get("/images/<int:image_id>.jpg")
def thumbnail(image_id: int):
    data = thumbnails.read(db.session(), image_id, _settings().thumbnail_dir)
    if data is None:
        raise ApiError("not_found", f"image {image_id} has no thumbnail")
    response = Response(data, mimetype="image/jpeg")
    response.headers["Cache-Control"] = "private, max-age=86400"  # an image id's bytes never change
    return response


@bp.get("/items/<int:item_id>/mask.png")
def mask(item_id: int):
    item = db.session().get(Item, item_id)
    if item is None or not item.mask:
        raise ApiError("not_found", f"item {item_id} has no mask")
    response = Response(overlays.mask_png(item.mask, item.position), mimetype="image/png")
    response.headers["Cache-Control"] = "private, max-age=86400"
    return response


def _secret_key(settings) -> str:
    """SECRET_KEY, or one made once and kept in instance/secret_key, so every worker on this machine
    signs sessions alike (several machines behind one address need SECRET_KEY set)."""
    if settings.secret_key:
        return settings.secret_key
    path = Path(__file__).resolve().parents[2] / "instance" / "secret_key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(secrets.token_urlsafe(48))
    except FileExistsError:
        pass
    return path.read_text().strip()


def init_app(app: Flask) -> None:
    settings = app.config["SETTINGS"]
    app.secret_key = _secret_key(settings)
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_SECURE=settings.catalogue_cookie_secure)
    app.register_blueprint(bp)
    app.jinja_env.globals["csrf_token"] = csrf_token
    limiter = app.extensions.get("rate_limiter")
    if limiter is not None:
        for name in NOT_RATE_LIMITED:
            limiter.exempt(app.view_functions[f"catalogue.{name}"])
