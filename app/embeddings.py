"""Item embeddings: their storage format and `flask embeddings backfill|status`.

Every item the pipeline stores gets its classifier embedding (Classifier.embed) in the same transaction
(app/store.py). Items analysed before that, or embedded by another classifier bundle, are filled by
`flask embeddings backfill`: it crops each item again from the image's stored thumbnail, or, for an
image without one, downloads its source URL again (through the same safe fetcher; the bytes must have
the stored sha256, else the image changed and its items are skipped) and keeps a thumbnail on the way.
Thumbnail crops are smaller than the originals the pipeline saw, so a backfilled vector is close to,
not equal to, the one a fresh analysis would store (measured in README, "Similarity search", Thumbnails).
"""
from __future__ import annotations

import dataclasses
import logging

import click
import numpy as np
from flask import Flask
from PIL import Image
from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session, selectinload

log = logging.getLogger(__name__)
STORED_DTYPE = np.dtype("<f2")  # float16: half the bytes, retrieval unchanged (docs/similarity.md)


def to_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=STORED_DTYPE).tobytes()


def from_bytes(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=STORED_DTYPE).astype(np.float32)


def matrix_from_bytes(rows: list[bytes]) -> np.ndarray:
    """Many stored vectors -> (N, D) float32 in one conversion."""
    if not rows:
        return np.zeros((0, 0), np.float32)
    return np.frombuffer(b"".join(rows), dtype=STORED_DTYPE).reshape(len(rows), -1).astype(np.float32)


@dataclasses.dataclass
class BackfillReport:
    model: str
    items_embedded: int = 0
    analyses_from_thumbnail: int = 0
    analyses_refetched: int = 0
    analyses_skipped: int = 0  # no thumbnail and no (unchanged, reachable) source URL
    skipped_reasons: dict = dataclasses.field(default_factory=dict)


def _missing(model: str):
    from .models import ItemEmbedding, Item

    return ~exists().where(ItemEmbedding.item_id == Item.id, ItemEmbedding.model == model)


def pending_count(session: Session, model: str) -> int:
    """Items of current analyses (the ones searched: app.models.is_current_analysis) without a `model` embedding."""
    from .models import Analysis, Item, is_current_analysis

    return session.scalar(select(func.count()).select_from(Item).join(Analysis)
                          .where(_missing(model), is_current_analysis()))


def _scaled_crops(image: np.ndarray, analysis, garment_crop_style: str) -> list[np.ndarray]:
    """The crops the pipeline classifies (the whole image, then each garment cut as GARMENT_CROP says),
    taken from `image`, which may be a thumbnail of the analysed image."""
    from pycocotools import mask as mask_utils

    from .crops import garment_crop

    height, width = image.shape[:2]
    sx, sy = width / analysis.image.width, height / analysis.image.height
    crops = []
    for item in analysis.items:
        if item.box is None:
            crops.append(image)
            continue
        x1, y1, x2, y2 = item.box
        mask = None
        if item.mask:
            full = mask_utils.decode({"size": item.mask["size"], "counts": item.mask["counts"].encode("ascii")})
            mask = np.asarray(Image.fromarray(full * 255).resize((width, height), Image.NEAREST)) > 0
        crops.append(garment_crop(image, (x1 * sx, y1 * sy, x2 * sx, y2 * sy), mask, garment_crop_style))
    return crops


def _image_of(session: Session, analysis, settings, refetch: bool) -> tuple[np.ndarray | None, str]:
    from . import thumbnails
    from .errors import ApiError
    from .fetch import decode, fetch

    image = thumbnails.read_array(session, analysis.image_id, settings.thumbnail_dir)
    if image is not None:
        return image, "thumbnail"
    if not refetch or not analysis.source_url:
        return None, "no thumbnail and no source URL" if refetch else "no thumbnail"
    try:
        fetched = fetch(analysis.source_url, settings)
        if fetched.sha256 != analysis.image.sha256:
            return None, "source URL now serves other bytes"
        image = decode(fetched.data, settings)
    except ApiError as error:
        return None, f"refetch failed: {error.code}"
    thumbnail = thumbnails.make(image, settings.thumbnail_max_side, settings.thumbnail_quality)
    if thumbnail is not None:
        thumbnails.put(session, analysis.image_id, analysis.image.sha256, thumbnail, settings.thumbnail_dir)
    return image, "refetched"


def backfill(session: Session, pipeline, settings, refetch: bool = True, analyses_per_batch: int = 16,
             progress=None) -> BackfillReport:
    """Embed every item of a current analysis that has no embedding from the pipeline's model (its
    classifier and garment crops; superseded analyses are never searched); one transaction per batch of
    analyses (a crash loses at most the batch in flight, and a rerun carries on where it stopped)."""
    from .models import Analysis, Item, ItemEmbedding, is_current_analysis

    classifier, model = pipeline.classifier, pipeline.embedding_model
    report = BackfillReport(model)
    after = 0
    while True:
        analyses = session.scalars(
            select(Analysis).where(Analysis.id > after, is_current_analysis(),
                                   exists().where(Item.analysis_id == Analysis.id, _missing(model)))
            .order_by(Analysis.id).limit(analyses_per_batch)
            .options(selectinload(Analysis.items).selectinload(Item.embeddings), selectinload(Analysis.image))).all()
        if not analyses:
            return report
        after = analyses[-1].id
        items, crops, allowed, whole_image_rows = [], [], [], []
        for analysis in analyses:
            image, source = _image_of(session, analysis, settings, refetch)
            if image is None:
                report.analyses_skipped += 1
                report.skipped_reasons[source] = report.skipped_reasons.get(source, 0) + 1
                continue
            if source == "thumbnail":
                report.analyses_from_thumbnail += 1
            else:
                report.analyses_refetched += 1
            whole_row = len(crops)
            for item, crop in zip(analysis.items, _scaled_crops(image, analysis, pipeline.garment_crop)):
                # The whole image (item 0) always joins the batch: the kind gate reads it for its garments.
                has_one = any(e.model == model for e in item.embeddings)
                if item.kind == "product" or not has_one:
                    items.append(None if has_one else item)  # None: in the batch, not written
                    crops.append(crop)
                    whole_image_rows.append(whole_row)
                    # a garment's category as the pipeline reads it: its detector class as the prior
                    allowed.append(pipeline.prior.for_detection(item.detector_label, item.detector_score))
        vectors = classifier.embed(crops, allowed, pipeline.prior.weight, pipeline.prior.kinds,
                                   whole_image_rows) if crops else []
        for item, vector in zip(items, vectors):
            if item is not None:
                session.add(ItemEmbedding(item_id=item.id, model=model, vector=to_bytes(vector)))
        session.commit()
        embedded = sum(item is not None for item in items)
        report.items_embedded += embedded
        if progress is not None:
            progress(embedded)


def init_app(app: Flask) -> None:
    @app.cli.group("embeddings")
    def embeddings_group():
        """Item embeddings for similarity search."""

    @embeddings_group.command("status")
    def status_command():
        """Embedded items per classifier bundle, and how many lack one from the serving bundle."""
        from classification.bundle import read_manifest
        from classification.embedding_head import embedding_version, load_head, served_extras

        from . import db
        from .models import ItemEmbedding

        from .crops import key_suffix

        settings = app.config["SETTINGS"]
        bundle = settings.classifier_bundle
        manifest = read_manifest(bundle)
        served_as = served_extras(manifest, settings.classifier_neighbour_vote, settings.classifier_feature_heads,
                                  settings.garment_input_size)
        serving = (embedding_version(manifest, load_head(bundle), settings.classifier_flip_average, served_as)
                   + key_suffix(settings.garment_crop))
        with app.app_context():
            session = db.session()
            for model, count in session.execute(select(ItemEmbedding.model, func.count()).group_by(ItemEmbedding.model)):
                click.echo(f"{model}: {count} items{' (serving)' if model == serving else ''}")
            click.echo(f"without an embedding from {serving}: {pending_count(session, serving)} items")

    @embeddings_group.command("backfill")
    @click.option("--no-refetch", is_flag=True, help="only use stored thumbnails; never download source URLs again")
    @click.option("--batch", default=16, show_default=True, help="analyses per transaction")
    def backfill_command(no_refetch: bool, batch: int):
        """Embed items stored without an embedding from the serving classifier bundle."""
        from tqdm import tqdm

        from . import db

        pipeline = app.extensions["pipeline"].load(notify=False)  # no index needed here
        with app.app_context():
            session = db.session()
            total = pending_count(session, pipeline.embedding_model)
            with tqdm(total=total, desc="embedding items", unit="item") as bar:
                report = backfill(session, pipeline, app.config["SETTINGS"], refetch=not no_refetch,
                                  analyses_per_batch=batch, progress=bar.update)
        click.echo(f"{report.model}: {report.items_embedded} items embedded; analyses from thumbnails "
                   f"{report.analyses_from_thumbnail}, refetched {report.analyses_refetched}, skipped "
                   f"{report.analyses_skipped} {report.skipped_reasons or ''}".rstrip())
