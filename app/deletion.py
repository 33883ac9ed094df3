"""Deleting stored images: a storefront takes a product down, or someone asks for a photo to be forgotten.

Deleting an image removes everything stored about it in one transaction: its source URLs, every analysis
of it (by any model bundles), their items and embeddings, and its thumbnail (the database's ON DELETE
CASCADE does the rows; a job's outcome for one of its URLs keeps its state, without the analysis id). A
thumbnail file under THUMBNAIL_DIR is removed once the transaction has committed, so a failed delete
leaves everything as it was. Similarity searches stop answering the deleted items at once (app.similarity).

Pruning superseded analyses (`flask images prune-superseded`): an image analysed again by newer model
bundles keeps its earlier analyses (app.models.is_current_analysis), which nothing lists or searches any
more; once the analysis that superseded one is older than a grace period (a client may still read the
old one by id), the old one goes with its items and embeddings, batch by batch. Its image, URLs,
thumbnail and current analysis stay; labels were carried to the current analysis when it was made.

Forgetting a URL removes that URL from every image fetched from it; an image no other URL refers to any
more is deleted as above, and one still at another URL keeps its analyses (they then show that URL). Image
ids are never reused (AUTOINCREMENT on SQLite, a sequence on PostgreSQL), so an id a client kept can only
ever name the image it named, or nothing.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from pathlib import Path

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.orm import Session, aliased

from . import changes, thumbnails
from .models import Analysis, ImageRecord, ImageSource, Item, utcnow

log = logging.getLogger(__name__)


@dataclasses.dataclass
class DeletedImage:
    image_id: int
    sha256: str
    analyses: int
    item_ids: list[int]

    def json(self) -> dict:
        return {"image_id": self.image_id, "sha256": self.sha256, "analyses": self.analyses,
                "items": len(self.item_ids)}


@dataclasses.dataclass
class ForgottenUrl:
    url: str
    deleted: list[DeletedImage]
    kept: dict[int, int]  # image id -> how many other URLs still refer to it

    @property
    def item_ids(self) -> list[int]:
        return [i for image in self.deleted for i in image.item_ids]

    def json(self) -> dict:
        return {"url": self.url, "deleted_images": [image.json() for image in self.deleted],
                "kept_images": [{"image_id": image_id, "other_urls": count} for image_id, count in self.kept.items()]}


def _delete_rows(session: Session, image: ImageRecord) -> DeletedImage:
    """Delete one image's rows in the caller's transaction (the caller commits)."""
    analysis_ids = list(session.scalars(select(Analysis.id).where(Analysis.image_id == image.id)))
    item_ids = list(session.scalars(select(Item.id).where(Item.analysis_id.in_(analysis_ids)))) if analysis_ids else []
    session.execute(delete(ImageRecord).where(ImageRecord.id == image.id))
    changes.record(session, "image.deleted", image_id=image.id, detail={"analyses": sorted(analysis_ids)})
    return DeletedImage(image.id, image.sha256, len(analysis_ids), item_ids)


def _remove_thumbnail_files(session: Session, deleted: list[DeletedImage], thumbnail_dir: Path | None) -> None:
    if thumbnail_dir is None:
        return
    for image in deleted:
        # The same bytes analysed again since the commit have written this (content-named) file anew.
        if session.scalar(select(ImageRecord.id).where(ImageRecord.sha256 == image.sha256)) is not None:
            continue
        path = thumbnails.file_path(thumbnail_dir, image.sha256)
        try:
            path.unlink(missing_ok=True)
        except OSError:  # the rows are gone; a file left behind is only bytes on a disk
            log.warning("could not remove the thumbnail %s of deleted image %d", path, image.image_id, exc_info=True)


def delete_image(session: Session, image_id: int, thumbnail_dir: Path | None) -> DeletedImage | None:
    """Delete an image and everything stored about it; None when there is no such image."""
    image = session.get(ImageRecord, image_id)
    if image is None:
        return None
    try:
        deleted = _delete_rows(session, image)
        session.commit()
    except Exception:
        session.rollback()
        raise
    _remove_thumbnail_files(session, [deleted], thumbnail_dir)
    return deleted


def forget_url(session: Session, url: str, thumbnail_dir: Path | None) -> ForgottenUrl | None:
    """Remove `url` from every image fetched from it, deleting the images no other URL refers to; None
    when no image was fetched from it."""
    try:
        image_ids = list(session.scalars(select(ImageSource.image_id).where(ImageSource.url == url)
                                         .order_by(ImageSource.image_id)))
        if not image_ids:
            return None
        session.execute(delete(ImageSource).where(ImageSource.url == url))
        deleted, kept = [], {}
        for image_id in image_ids:
            others = session.scalar(select(func.count()).select_from(ImageSource).where(ImageSource.image_id == image_id))
            if others == 0:
                deleted.append(_delete_rows(session, session.get(ImageRecord, image_id)))
                continue
            kept[image_id] = others
            # Its analyses stop naming the forgotten URL: they show the URL it was seen at most recently.
            latest = session.scalar(select(ImageSource.url).where(ImageSource.image_id == image_id)
                                    .order_by(ImageSource.last_seen_at.desc(), ImageSource.id.desc()).limit(1))
            shown_elsewhere = session.scalars(update(Analysis).where(Analysis.image_id == image_id, Analysis.source_url == url)
                                             .values(source_url=latest).returning(Analysis.id)).all()
            for analysis_id in sorted(shown_elsewhere):
                changes.record(session, "analysis.updated", image_id=image_id, analysis_id=analysis_id)
        session.commit()
    except Exception:
        session.rollback()
        raise
    _remove_thumbnail_files(session, deleted, thumbnail_dir)
    return ForgottenUrl(url, deleted, kept)


@dataclasses.dataclass
class SupersededAnalyses:
    """The analyses a prune would delete: found once, then deleted batch by batch."""
    cutoff: dt.datetime
    ids: list[int]
    items: int
    images: int  # images that lose at least one superseded analysis


def superseded_before(cutoff: dt.datetime):
    """WHERE clause: the Analysis row was superseded by a newer analysis of its image stored before `cutoff`."""
    newer = aliased(Analysis)
    return exists().where(newer.image_id == Analysis.image_id, newer.id > Analysis.id, newer.created_at < cutoff)


def find_superseded(session: Session, older_than: dt.timedelta) -> SupersededAnalyses:
    """The analyses superseded more than `older_than` ago, with how many items and images they touch."""
    cutoff = utcnow() - older_than
    rows = session.execute(select(Analysis.id, Analysis.image_id).where(superseded_before(cutoff))
                           .order_by(Analysis.id)).all()
    ids = [row.id for row in rows]
    items = sum(session.scalar(select(func.count()).select_from(Item).where(Item.analysis_id.in_(ids[i:i + 1000])))
                for i in range(0, len(ids), 1000))
    session.rollback()
    return SupersededAnalyses(cutoff, ids, items, len({row.image_id for row in rows}))


def delete_superseded(session: Session, found: SupersededAnalyses, batch: int = 200, progress=None) -> None:
    """Delete what find_superseded found, with their items and embeddings, one transaction per `batch`
    analyses (an interrupted prune leaves whole analyses; run it again)."""
    for start in range(0, len(found.ids), batch):
        chunk = found.ids[start:start + batch]
        try:
            # Checked again in the transaction that deletes: a superseded analysis stays superseded.
            session.execute(delete(Analysis).where(Analysis.id.in_(chunk), superseded_before(found.cutoff)))
            session.commit()
        except Exception:
            session.rollback()
            raise
        if progress is not None:
            progress(len(chunk))
