"""Similarity API: GET /v1/items/<id>/similar ("more like this") and POST /v1/search (search by photo).

Both take the /v1/items filters and `k`. A search by photo runs the pipeline on the image (detector and
classifier, the same code as POST /v1/analyses) and searches with the whole image and with each garment
found; it stores nothing unless `store` is true (then it is also an analysis, answered with its id). An
image already analysed by the serving bundles is not run through the models again.
"""
from __future__ import annotations

import time

from flask import Blueprint, current_app, request

from . import db
from .analysis import analyse_images, analysis_key
from .api import parse_flag, read_input
from .auth import current_key_id
from .errors import ApiError
from .fetch import decode
from .filters import ItemFilters, known_labels
from .store import find_analysis, get_analysis, item_json, listed_item_json

bp = Blueprint("similarity", __name__, url_prefix="/v1")


def _settings():
    return current_app.config["SETTINGS"]


def _k() -> int:
    try:
        k = int(request.args.get("k", 20))
    except ValueError:
        raise ApiError("invalid_request", "k must be an integer")
    if not 1 <= k <= _settings().similarity_max_k:
        raise ApiError("invalid_request", f"k must be between 1 and {_settings().similarity_max_k}")
    return k


def _results(result) -> dict:
    return {"search": {"method": result.method, "index": result.index_kind, "index_size": result.index_size,
                       "query_expansion": result.query_expansion},
            "results": [{"score": round(hit.score, 5), "item": listed_item_json(hit.item)} for hit in result.hits]}


def searchable(filters: ItemFilters) -> ItemFilters:
    """The index holds the items of each image's current analysis only (app.similarity)."""
    if filters.analyses != "current":
        raise ApiError("invalid_request", "similarity searches find items of each image's current analysis only: "
                                          "drop analyses=all")
    return filters


def similar_to_item(item_id: int, k: int, filters: ItemFilters, same_image: bool = False) -> dict:
    """Shared by the API and the catalogue page."""
    from .models import Item

    searchable(filters)
    session = db.session()
    item = db.get_or_not_found(session, Item, item_id, "item")
    pipeline = current_app.extensions["pipeline"].load()
    index = current_app.extensions["similarity"]
    vector = index.item_vector(session, item_id, pipeline.embedding_model)
    if vector is None:
        raise ApiError("embedding_unavailable", f"item {item_id} has no embedding from {pipeline.embedding_model}",
                       model=pipeline.embedding_model)
    exclude = set() if same_image else {item.analysis_id}
    result = index.search(session, pipeline.embedding_model, vector, k + (1 if same_image else 0), filters, exclude)
    result.hits = [hit for hit in result.hits if hit.item.id != item_id][:k]
    return {"item": listed_item_json(session.get(Item, item_id)), "model": pipeline.embedding_model, **_results(result)}


@bp.get("/items/<int:item_id>/similar")
def similar(item_id: int):
    return similar_to_item(item_id, _k(), ItemFilters.parse(request.args, known_labels(_settings().classifier_bundle)),
                           parse_flag(request.args.get("same_image"), "same_image"))


def search_by_image(fetched, k: int, filters: ItemFilters, store: bool, garments: bool, timings: dict) -> dict:
    """Shared by the API and the catalogue page's upload box."""
    searchable(filters)
    session = db.session()
    settings = _settings()
    pipeline = current_app.extensions["pipeline"].load()
    index = current_app.extensions["similarity"]
    analysis_id, exclude = None, set()
    if store:
        outcome = analyse_images(session, pipeline, settings, [fetched], False, [timings], api_key_id=current_key_id())[0]
        if outcome.error:
            raise outcome.error
        analysis_id = outcome.analysis["id"]
        timings.update(outcome.analysis["timings_ms"])  # the stages the analysis ran, as a search without store
    else:
        stored = find_analysis(session, fetched.sha256, analysis_key(pipeline, fetched, settings))
        analysis_id = stored.id if stored else None
    if analysis_id is not None:  # stored (now or before): its items and embeddings are in the database
        analysis = get_analysis(session, analysis_id)
        queries = [(item_json(item), index.item_vector(session, item.id, pipeline.embedding_model))
                   for item in analysis.items]
        exclude = {analysis_id}
    else:
        start = time.perf_counter()
        image = decode(fetched.data, settings)
        timings["decode"] = round((time.perf_counter() - start) * 1000, 2)
        items = pipeline.analyse(image, timings)
        queries = [({key: value for key, value in item.items() if key != "embedding"} | {"labels": None},
                    item["embedding"]) for item in items]
    if not garments:
        queries = queries[:1]
    answers = []
    for item, vector in queries:
        if vector is None:  # stored before embeddings were kept, not backfilled yet
            answers.append({"item": item, "results": [], "search": None})
            continue
        answers.append({"item": item, **_results(index.search(session, pipeline.embedding_model, vector, k, filters,
                                                              exclude))})
    return {"analysis_id": analysis_id, "stored": store, "model": pipeline.embedding_model, "timings_ms": timings,
            "queries": answers}


@bp.post("/search")
def search():
    k, filters = _k(), ItemFilters.parse(request.args, known_labels(_settings().classifier_bundle))
    garments = parse_flag(request.args.get("garments", "true"), "garments")  # before any download
    fetched, store, timings = read_input(flag="store")
    body = search_by_image(fetched, k, filters, store, garments, timings)
    return body, 200
