"""Storage of analyses: one transaction per analysis, idempotent on (image sha256, model bundles)."""
from __future__ import annotations

import base64
import json

from sqlalchemy import delete, exists, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from . import changes, labels, thumbnails  # modules: labels and changes import this one too
from .embeddings import to_bytes
from .errors import ApiError
from .filters import ItemFilters
from .models import (TASK_COLUMNS, Analysis, ImageRecord, ImageSource, Item, ItemEmbedding, ItemLabels,
                     is_current_analysis, iso_utc, utcnow)


def _insert(session: Session, model):
    return (pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert)(model)


def find_analysis(session: Session, sha256: str, bundle_key: str) -> Analysis | None:
    return session.scalar(
        select(Analysis).join(ImageRecord).where(ImageRecord.sha256 == sha256, Analysis.bundle_key == bundle_key)
        .options(selectinload(Analysis.items), selectinload(Analysis.image)))


def get_analysis(session: Session, analysis_id: int) -> Analysis | None:
    return session.get(Analysis, analysis_id, options=[selectinload(Analysis.items), selectinload(Analysis.image)])


def latest_for_url(session: Session, url: str) -> Analysis | None:
    return session.scalar(
        select(Analysis).join(ImageSource, ImageSource.image_id == Analysis.image_id).where(ImageSource.url == url)
        .order_by(ImageSource.last_seen_at.desc(), Analysis.created_at.desc(), Analysis.id.desc()).limit(1)
        .options(selectinload(Analysis.items), selectinload(Analysis.image)))


def _upsert_image(session: Session, sha256: str, width: int, height: int) -> int:
    session.execute(_insert(session, ImageRecord).values(sha256=sha256, width=width, height=height)
                    .on_conflict_do_nothing(index_elements=["sha256"]))
    return session.scalar(select(ImageRecord.id).where(ImageRecord.sha256 == sha256))


def remember_source(session: Session, image_id: int, url: str | None) -> None:
    if not url:
        return
    now = utcnow()
    statement = _insert(session, ImageSource).values(image_id=image_id, url=url, last_seen_at=now)
    session.execute(statement.on_conflict_do_update(index_elements=["url", "image_id"], set_={"last_seen_at": now}))


def item_row(item: dict, embedding_model: str | None = None) -> Item:
    """The row of one pipeline item; its `embedding` (when there is one) is stored with it, tagged with
    the classifier bundle that made it."""
    embeddings = ([ItemEmbedding(model=embedding_model, vector=to_bytes(item["embedding"]))]
                  if embedding_model and item.get("embedding") is not None else [])
    tags = {**item["category"], **item["style"]}
    columns = {}
    for task, (value_column, confidence_column) in TASK_COLUMNS.items():
        columns[value_column] = tags[task]["label"]
        columns[confidence_column] = tags[task]["confidence"]
    return Item(position=item["position"], kind=item["kind"], box=item["box"], mask=item["mask"],
                detector_label=(item["detector"] or {}).get("label"), detector_score=(item["detector"] or {}).get("score"),
                category_path_confidence=item["category"]["path_confidence"],
                category_constrained_by=item["category"].get("constrained_by") or None,
                top3={task: tags[task]["top3"] for task in TASK_COLUMNS}, colours=item["colours"],
                dominant_colour=item["colours"][0]["name"] if item["colours"] else None, embeddings=embeddings,
                **columns)


def save_analysis(session: Session, *, sha256: str, width: int, height: int, url: str | None, bundle_key: str,
                  bundles: dict, timings: dict, items: list[dict], refresh: bool,
                  api_key_id: int | None = None, embedding_model: str | None = None,
                  thumbnail: thumbnails.ThumbnailData | None = None,
                  thumbnail_dir=None) -> tuple[Analysis, bool]:
    """Store everything in one transaction: image, source, analysis, items with their embeddings, and
    the thumbnail. Returns (analysis, created). A concurrent writer of the same image and bundles wins
    the unique constraint; the loser returns the winner's analysis. An image deleted (DELETE /v1/images)
    between its upsert here and the inserts that refer to it is stored anew, once."""
    for attempt in (1, 2):
        try:
            image_id = _upsert_image(session, sha256, width, height)
            remember_source(session, image_id, url)
            if thumbnail is not None and not thumbnails.exists(session, image_id):
                thumbnails.put(session, image_id, sha256, thumbnail, thumbnail_dir)
            labelled = labels.labelled_items_of_image(session, image_id)  # before a refresh deletes any of them
            new_items = [item_row(i, embedding_model) for i in items]
            labels.carry_labels(labelled, new_items)
            replaced = []
            if refresh:
                replaced = list(session.scalars(delete(Analysis).where(
                    Analysis.image_id == image_id, Analysis.bundle_key == bundle_key).returning(Analysis.id)))
            # The image's current analysis until now (one by other model bundles): this one supersedes it.
            superseded = session.scalar(select(func.max(Analysis.id)).where(Analysis.image_id == image_id))
            analysis = Analysis(image_id=image_id, bundle_key=bundle_key, bundles=bundles, timings_ms=timings,
                                source_url=url, api_key_id=api_key_id, items=new_items)
            session.add(analysis)
            session.flush()
            changes.record(session, "analysis.created", image_id=image_id, analysis_id=analysis.id,
                           detail={"replaces": sorted(replaced), "supersedes": superseded})
            session.commit()
        except IntegrityError:
            session.rollback()
            existing = find_analysis(session, sha256, bundle_key)
            if existing is not None:
                return existing, False
            if attempt == 2:
                raise
            continue  # no winner to return: the image was deleted under us
        except Exception:
            session.rollback()
            raise
        return get_analysis(session, analysis.id), True
    raise AssertionError("unreachable")


# ---- JSON -------------------------------------------------------------------------------------------------

def item_json(item: Item) -> dict:
    tag = {}
    for task, (value_column, confidence_column) in TASK_COLUMNS.items():
        tag[task] = {"label": getattr(item, value_column), "confidence": getattr(item, confidence_column),
                     "top3": item.top3.get(task, [])}
    return {
        "id": item.id, "position": item.position, "kind": item.kind, "box": item.box, "mask": item.mask,
        "detector": {"label": item.detector_label, "score": item.detector_score} if item.detector_label else None,
        "category": {t: tag[t] for t in ("gender", "masterCategory", "subCategory", "articleType")}
        | {"path_confidence": item.category_path_confidence,
           "constrained_by": item.category_constrained_by},
        "style": {t: tag[t] for t in ("baseColour", "season", "usage")},
        "colours": item.colours,
        "labels": labels.labels_json(item.person_labels),  # a person's labels, which the tags above show
    }


def analysis_json(analysis: Analysis) -> dict:
    return {
        "id": analysis.id,
        "image": {"id": analysis.image_id, "url": analysis.source_url, "sha256": analysis.image.sha256,
                  "width": analysis.image.width,
                  "height": analysis.image.height},
        "bundles": analysis.bundles, "timings_ms": analysis.timings_ms,
        "created_at": iso_utc(analysis.created_at),
        "items": [item_json(i) for i in analysis.items],
    }


def stored_item_json(session: Session, item: Item) -> dict:
    """One item as `/v1/items` lists it, and whether its analysis is its image's current one (an item of
    a superseded analysis stays readable, as that analysis does, but listings and searches skip it)."""
    newest = session.scalar(select(func.max(Analysis.id)).where(Analysis.image_id == item.analysis.image_id))
    return listed_item_json(item) | {"current": item.analysis_id == newest}


def image_json(session: Session, image_id: int) -> dict | None:
    """An image as stored: the URLs it was fetched from (latest first) and its analyses (newest first; the
    current one, what listings show, marked)."""
    image = session.get(ImageRecord, image_id)
    if image is None:
        return None
    sources = session.scalars(select(ImageSource).where(ImageSource.image_id == image_id)
                              .order_by(ImageSource.last_seen_at.desc(), ImageSource.id.desc())).all()
    analyses = session.scalars(select(Analysis).where(Analysis.image_id == image_id)
                               .order_by(Analysis.created_at.desc(), Analysis.id.desc())).all()
    current = max((a.id for a in analyses), default=None)
    return {"id": image.id, "sha256": image.sha256, "width": image.width, "height": image.height,
            "created_at": iso_utc(image.created_at),
            "urls": [{"url": s.url, "last_seen_at": iso_utc(s.last_seen_at)} for s in sources],
            "analyses": [{"id": a.id, "bundles": a.bundles, "created_at": iso_utc(a.created_at),
                          "current": a.id == current} for a in analyses]}


# ---- catalogue query ----------------------------------------------------------------------------------------

ITEM_FILTERS = {"gender": Item.gender, "masterCategory": Item.master_category, "subCategory": Item.sub_category,
                "articleType": Item.article_type, "usage": Item.usage, "season": Item.season}


def encode_cursor(position) -> str:
    """An opaque keyset cursor holding `position` (any JSON value: an item id, a job's time and id)."""
    return base64.urlsafe_b64encode(json.dumps({"after": position}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, read=None):
    """The position an encode_cursor cursor holds, through `read` (default: an item id, an int);
    invalid_request for anything this service did not issue."""
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))["after"]
        if read is not None:
            return read(value)
        if not isinstance(value, int):
            raise ValueError
        return value
    except (ValueError, KeyError, TypeError, json.JSONDecodeError):
        raise ApiError("invalid_request", "cursor is not one this service issued")


def item_conditions(filters: dict[str, str], colour: str | None, min_confidence: float | None,
                    kind: str | None, labelled: bool | None = None, analyses: str = "current",
                    max_confidence: float | None = None) -> list:
    """The WHERE clauses of the catalogue filters (GET /v1/items, similarity searches, the catalogue page),
    for a statement that joins Item to its Analysis. The confidence bounds (at least min_confidence, under
    max_confidence) apply to each task filtered, or to articleType when none is."""
    conditions = [is_current_analysis()] if analyses == "current" else []
    if labelled is not None:
        by_person = exists().where(ItemLabels.item_id == Item.id)
        conditions.append(by_person if labelled else ~by_person)
    for name, value in filters.items():
        conditions.append(ITEM_FILTERS[name] == value)
        conditions += _confidence_bounds(getattr(Item, TASK_COLUMNS[name][1]), min_confidence, max_confidence)
    if colour:
        colour = colour.strip()
        conditions.append((func.lower(Item.base_colour) == colour.lower()) | (Item.dominant_colour == colour.lower()))
    if not filters:
        conditions += _confidence_bounds(Item.article_type_confidence, min_confidence, max_confidence)
    if kind:
        conditions.append(Item.kind == kind)
    return conditions


def _confidence_bounds(column, min_confidence: float | None, max_confidence: float | None) -> list:
    return ([column >= min_confidence] if min_confidence is not None else []) + \
           ([column < max_confidence] if max_confidence is not None else [])


def listed_item_json(item: Item) -> dict:
    """An item as catalogue listings show it: with its analysis and image."""
    image = item.analysis.image
    return item_json(item) | {"analysis_id": item.analysis_id,
                              "image": {"id": image.id, "sha256": image.sha256, "url": item.analysis.source_url,
                                        "width": image.width, "height": image.height}}


def query_item_rows(session: Session, filters: ItemFilters, cursor: str | None,
                    limit: int) -> tuple[list[Item], str | None]:
    """Keyset pagination on item id: stable under inserts, no OFFSET scans."""
    statement = select(Item).join(Analysis).options(selectinload(Item.analysis).selectinload(Analysis.image))
    statement = statement.where(*filters.conditions())
    if cursor:
        statement = statement.where(Item.id > decode_cursor(cursor))
    rows = session.scalars(statement.order_by(Item.id).limit(limit + 1)).all()
    page = rows[:limit]
    return page, (encode_cursor(page[-1].id) if len(rows) > limit else None)


def query_items(session: Session, filters: ItemFilters, cursor: str | None, limit: int) -> tuple[list[dict], str | None]:
    page, next_cursor = query_item_rows(session, filters, cursor, limit)
    return [listed_item_json(i) for i in page], next_cursor
