"""People's labels for items: corrections of the model's tags that the service keeps and learns from.

`PUT /v1/items/<id>/labels` gives an item labels for any of the seven tasks (a catalogue team fixing what
the model got wrong, or a shop feeding its own product data). The parent category levels a label implies
are filled in (articleType Flats -> Footwear / Shoes / Flats), and labels that would leave the item on a
category path the taxonomy lacks are refused. While labels stand, the item's tag columns hold them with
confidence 1.0, so every listing, filter, catalogue page and similarity filter reads them; the model's
tags they replaced are kept beside them and come back when the labels are withdrawn (`DELETE`).

Labels belong to the image, not to one analysis of it: a refreshed analysis, or one by newer model
bundles, carries them over (the whole image to the whole image, a garment to the new garment whose box
overlaps it most, IoU >= 0.5). And every worker adds the labelled items to its neighbour vote
(app/label_votes.py), so images like them are tagged more like the people labelled them.
"""
from __future__ import annotations

import datetime as dt
import functools
import secrets
from collections import Counter
from typing import Iterable, Mapping

import numpy as np
import torch
from sqlalchemy import select
from sqlalchemy.orm import Session

from torchvision.ops import box_iou

from classification.neighbour_vote import NO_LABEL
from classification.taxonomy import HIERARCHY_LEVELS, Taxonomy

from . import changes
from .db import get_or_not_found
from .errors import ApiError
from .models import TASK_COLUMNS, Analysis, Item, ItemLabels, iso_utc, utcnow

TASKS = tuple(TASK_COLUMNS)
CARRY_MIN_IOU = 0.5  # a garment's labels go to the new garment whose box overlaps it at least this much


def complete_labels(taxonomy: Taxonomy, given, path_counts: Mapping[tuple[str, str, str], int] | None = None) -> dict[str, str]:
    """The labels a person gave, checked against the serving classifier's taxonomy, with the parent
    category levels they imply: those of the one path that holds them or, where several do (the catalogue files a
    few Tshirts under Accessories / Belts), of the path the training images take most often
    (`path_counts`; without counts, only the levels all those paths share). Raises invalid_request (not an
    object of known tasks), unknown_label (a label the classifier does not know) or inconsistent_labels
    (category levels no path of the taxonomy holds)."""
    if not isinstance(given, dict) or not given:
        raise ApiError("invalid_request", f"send a JSON object of labels, e.g. {{\"articleType\": \"Flats\"}}; "
                                          f"tasks: {', '.join(TASKS)}")
    unknown = sorted(set(given) - set(TASKS))
    if unknown:
        raise ApiError("invalid_request", f"unknown tasks: {', '.join(unknown)}; tasks: {', '.join(TASKS)}")
    labels = {}
    for task, label in given.items():
        if not isinstance(label, str):
            raise ApiError("invalid_request", f"{task} must be a string")
        if taxonomy.index(task, label) < 0:
            raise ApiError("unknown_label", f"{task} {label!r} is not a label of the serving classifier",
                           task=task, label=label)
        labels[task] = label
    levels = [task for task in HIERARCHY_LEVELS if task in labels]
    if levels:
        paths = [path for path in taxonomy.paths
                 if all(path[HIERARCHY_LEVELS.index(task)] == labels[task] for task in levels)]
        if not paths:
            raise ApiError("inconsistent_labels", "no category path of the serving classifier holds "
                           + " / ".join(f"{task} {labels[task]}" for task in levels))
        counts = path_counts or {}
        if max(counts.get(tuple(path), 0) for path in paths) > 0:
            paths = [max(paths, key=lambda path: counts.get(tuple(path), 0))]
        deepest = max(HIERARCHY_LEVELS.index(task) for task in levels)
        for position, task in enumerate(HIERARCHY_LEVELS[:deepest]):  # parents only: Bags names no articleType
            implied = {path[position] for path in paths}
            if task not in labels and len(implied) == 1:
                labels[task] = implied.pop()
    return {task: labels[task] for task in TASKS if task in labels}


@functools.lru_cache(maxsize=2)
def training_path_counts(classifier) -> Counter:
    """How often each (masterCategory, subCategory, articleType) path labels the classifier's training
    images: the rows of its neighbour vote (empty without one). Once per loaded classifier."""
    vote = classifier.neighbour_vote
    if vote is None:
        return Counter()
    levels = np.stack([vote.labels[task] for task in HIERARCHY_LEVELS], axis=1)
    levels = levels[(levels != NO_LABEL).all(axis=1)]
    names = [classifier.taxonomy.labels[task] for task in HIERARCHY_LEVELS]
    return Counter(tuple(names[i][index] for i, index in enumerate(row)) for row in levels.tolist())


def _item(session: Session, item_id: int) -> Item:
    return get_or_not_found(session, Item, item_id, "item")


def set_labels(session: Session, item_id: int, labels: Mapping[str, str], api_key_id: int | None,
               taxonomy: Taxonomy) -> Item:
    """Give the item these labels (replacing any it had), in one transaction. Refused (inconsistent_labels)
    when the item's category levels the person left to the model would make a path the taxonomy lacks."""
    item = _item(session, item_id)
    model = (item.person_labels.model_tags if item.person_labels else {})
    path = tuple(labels.get(task) or (model.get(task) or {}).get("label") or getattr(item, TASK_COLUMNS[task][0])
                 for task in HIERARCHY_LEVELS)
    if path not in taxonomy.paths:
        left = [task for task in HIERARCHY_LEVELS if task not in labels]
        raise ApiError("inconsistent_labels", f"with these labels the item's category would be {' / '.join(path)}, "
                       f"which is no path of the serving classifier: label its {' and '.join(left)} too")
    _apply(item, labels, api_key_id)
    _record(session, item)
    session.commit()
    return item


def withdraw_labels(session: Session, item_id: int) -> Item:
    """Withdraw the item's labels: its tags are the model's again."""
    item = _item(session, item_id)
    if item.person_labels is None:
        raise ApiError("not_found", f"item {item_id} has no labels")
    _restore(item)
    item.person_labels = None
    _record(session, item)
    session.commit()
    return item


def _record(session: Session, item: Item) -> None:
    changes.record(session, "item.labelled", image_id=item.analysis.image_id, analysis_id=item.analysis_id,
                   item_id=item.id)


def _apply(item: Item, labels: Mapping[str, str], api_key_id: int | None,
           labelled_at: dt.datetime | None = None) -> None:
    """Put a person's labels on the item; `labelled_at`: when they were given (now unless carried over)."""
    _restore(item)  # the model's tags first: a new set of labels replaces the old one entirely
    model_tags = {}
    for task, label in labels.items():
        value_column, confidence_column = TASK_COLUMNS[task]
        model_tags[task] = {"label": getattr(item, value_column), "confidence": getattr(item, confidence_column)}
        setattr(item, value_column, label)
        setattr(item, confidence_column, 1.0)
    labelled_at = labelled_at or utcnow()
    if item.person_labels is None:
        item.person_labels = ItemLabels(labels={}, model_tags={}, revision=0, updated_at=labelled_at)
    row = item.person_labels
    row.labels, row.model_tags, row.api_key_id, row.updated_at = dict(labels), model_tags, api_key_id, labelled_at
    # A new random revision at every write (not a timestamp: clocks and transaction start times do
    # not order commits), so the count and sum each worker compares change with any write.
    row.revision = secrets.randbits(31)


def _restore(item: Item) -> None:
    if item.person_labels is None:
        return
    for task, tag in item.person_labels.model_tags.items():
        value_column, confidence_column = TASK_COLUMNS[task]
        setattr(item, value_column, tag["label"])
        setattr(item, confidence_column, tag["confidence"])


def labels_json(row: ItemLabels | None) -> dict | None:
    if row is None:
        return None
    return {"tags": row.labels, "model": row.model_tags,
            "updated_at": iso_utc(row.updated_at)}


# ---- carried over to new analyses of the image ----------------------------------------------------------

def labelled_items_of_image(session: Session, image_id: int) -> list[tuple[Item, ItemLabels]]:
    """Every labelled item of the image's analyses, newest analysis first (read before a refresh deletes
    the analysis it replaces)."""
    rows = session.execute(
        select(Item, ItemLabels).join(ItemLabels, ItemLabels.item_id == Item.id).join(Analysis)
        .where(Analysis.image_id == image_id).order_by(Analysis.created_at.desc(), Analysis.id.desc())).all()
    return [(item, labels) for item, labels in rows]


def carry_labels(labelled: Iterable[tuple[Item, ItemLabels]], new_items: list[Item]) -> None:
    """Give the new items of an analysis the labels of the matching labelled items (the newest first)."""
    sources = [(item.kind, list(item.box) if item.box else None, dict(labels.labels), labels.api_key_id,
                labels.updated_at) for item, labels in labelled]  # copied: a refresh deletes these rows next
    for item in new_items:
        for kind, box, labels, api_key_id, labelled_at in sources:
            if kind == item.kind and (kind == "product" or _iou(box, item.box) >= CARRY_MIN_IOU):
                _apply(item, labels, api_key_id, labelled_at)  # still when the person labelled it
                break


def _iou(a, b) -> float:
    if not a or not b:
        return 0.0
    return float(box_iou(torch.tensor([a], dtype=torch.float32), torch.tensor([b], dtype=torch.float32))[0, 0])
