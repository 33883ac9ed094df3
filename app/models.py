"""SQLAlchemy 2 models: images (by sha256), their source URLs, analyses (per model bundles), items."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import (JSON, BigInteger, Float, ForeignKey, Index, Integer, LargeBinary, String, Text,
                        UniqueConstraint, exists, func)
from sqlalchemy.orm import DeclarativeBase, Mapped, aliased, mapped_column, relationship


class Base(DeclarativeBase):
    pass


def utcnow() -> dt.datetime:
    """Now, as the tables store times: UTC without a zone."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def iso_utc(value: dt.datetime | None) -> str | None:
    """A stored time as the API shows it (ISO 8601 with Z), None for none."""
    return value.isoformat() + "Z" if value else None


class ImageRecord(Base):
    __tablename__ = "images"
    __table_args__ = {"sqlite_autoincrement": True}  # a deleted image's id is never given to another
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    sources: Mapped[list["ImageSource"]] = relationship(back_populates="image", cascade="all, delete-orphan")


class ImageSource(Base):
    """A URL an image was fetched from (one image may live at many URLs)."""
    __tablename__ = "image_sources"
    __table_args__ = (UniqueConstraint("url", "image_id", name="uq_image_sources_url_image"),
                      Index("ix_image_sources_url_seen", "url", "last_seen_at"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(Text)
    last_seen_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    image: Mapped[ImageRecord] = relationship(back_populates="sources")


class ApiKey(Base):
    """A client's API key. Only the SHA-256 of the key is stored (keys are 256-bit random, so a plain
    hash is enough: there is nothing to brute-force); `prefix` identifies it in listings and logs."""
    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    rate_limit: Mapped[str | None] = mapped_column(String(64))  # e.g. "120/minute"; None: the default
    job_url_quota: Mapped[str | None] = mapped_column(String(64))  # e.g. "10000/day"; None: the default
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    revoked_at: Mapped[dt.datetime | None] = mapped_column()


class Analysis(Base):
    __tablename__ = "analyses"
    # One analysis per image and model bundles: the idempotency key of POST /v1/analyses.
    __table_args__ = (UniqueConstraint("image_id", "bundle_key", name="uq_analyses_image_bundles"),
                      {"sqlite_autoincrement": True})  # ids are never reused after a refresh
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    bundle_key: Mapped[str] = mapped_column(String(1000))  # every serving option that changes the tags (0010)
    bundles: Mapped[dict] = mapped_column(JSON)
    timings_ms: Mapped[dict] = mapped_column(JSON)
    source_url: Mapped[str | None] = mapped_column(Text)
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))  # who made it
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())
    image: Mapped[ImageRecord] = relationship()
    items: Mapped[list["Item"]] = relationship(back_populates="analysis", cascade="all, delete-orphan",
                                               order_by="Item.position")


def is_current_analysis():
    """WHERE clause: the Analysis row is its image's current analysis, the newest one kept. An image
    analysed again by newer model bundles keeps its earlier analyses (GET /v1/images/<id> lists them), but
    what the service says about the image now is the newest: catalogue listings, similarity searches and
    embedding backfills read that one. Ids only grow, so an analysis once superseded stays superseded."""
    newer = aliased(Analysis)
    return ~exists().where(newer.image_id == Analysis.image_id, newer.id > Analysis.id)


class Item(Base):
    """One tagged thing: the whole image (kind 'product') or one detected garment (kind 'garment')."""
    __tablename__ = "items"
    __table_args__ = (
        Index("ix_items_article", "article_type", "id"),
        Index("ix_items_sub", "sub_category", "id"),
        Index("ix_items_master_gender", "master_category", "gender", "id"),
        Index("ix_items_colour", "base_colour", "id"),
        Index("ix_items_usage_season", "usage", "season", "id"),
        Index("ix_items_dominant_colour", "dominant_colour", "id"),
        {"sqlite_autoincrement": True},  # keyset cursors rely on ids only growing
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    analysis_id: Mapped[int] = mapped_column(ForeignKey("analyses.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    box: Mapped[list | None] = mapped_column(JSON)
    mask: Mapped[dict | None] = mapped_column(JSON)
    detector_label: Mapped[str | None] = mapped_column(String(64))
    detector_score: Mapped[float | None] = mapped_column(Float)
    gender: Mapped[str] = mapped_column(String(32))
    gender_confidence: Mapped[float] = mapped_column(Float)
    master_category: Mapped[str] = mapped_column(String(64))
    master_category_confidence: Mapped[float] = mapped_column(Float)
    sub_category: Mapped[str] = mapped_column(String(64))
    sub_category_confidence: Mapped[float] = mapped_column(Float)
    article_type: Mapped[str] = mapped_column(String(64))
    article_type_confidence: Mapped[float] = mapped_column(Float)
    category_path_confidence: Mapped[float] = mapped_column(Float)
    # The detector class that constrained the category path ("detector:footwear"); None when nothing did.
    category_constrained_by: Mapped[str | None] = mapped_column(String(64))
    base_colour: Mapped[str] = mapped_column(String(64))
    base_colour_confidence: Mapped[float] = mapped_column(Float)
    season: Mapped[str] = mapped_column(String(32))
    season_confidence: Mapped[float] = mapped_column(Float)
    usage: Mapped[str] = mapped_column(String(32))
    usage_confidence: Mapped[float] = mapped_column(Float)
    top3: Mapped[dict] = mapped_column(JSON)
    colours: Mapped[list] = mapped_column(JSON)
    dominant_colour: Mapped[str | None] = mapped_column(String(32))
    analysis: Mapped[Analysis] = relationship(back_populates="items")
    embeddings: Mapped[list["ItemEmbedding"]] = relationship(back_populates="item", cascade="all, delete-orphan",
                                                             passive_deletes=True)
    # A person's labels for this item (app/labels.py); loaded with the items, in one query per page.
    person_labels: Mapped["ItemLabels | None"] = relationship(back_populates="item", cascade="all, delete-orphan",
                                                              passive_deletes=True, lazy="selectin")


class ItemLabels(Base):
    """A person's labels for an item: corrections of its tags (app/labels.py). `labels` maps each task a
    person labelled (and each category level those imply) to its label; the item's tag columns hold them
    while they stand, and `model_tags` keeps the model's tags they replaced ({task: {label, confidence}}),
    restored when the labels are withdrawn. `revision` is a random number drawn at every write: each
    worker compares count and sum of revisions to notice any change (app/label_votes.py)."""
    __tablename__ = "item_labels"
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), primary_key=True)
    labels: Mapped[dict] = mapped_column(JSON)
    model_tags: Mapped[dict] = mapped_column(JSON)
    revision: Mapped[int] = mapped_column(Integer)
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))  # who labelled
    updated_at: Mapped[dt.datetime] = mapped_column()
    item: Mapped[Item] = relationship(back_populates="person_labels")


class ItemEmbedding(Base):
    """An item's L2-normalised classifier embedding, float16 little-endian bytes. `model` is the
    classifier bundle's name:version (+ its embedding head's hash): only vectors of one model are
    comparable, so each index holds one.
    The id only grows (also when `flask embeddings backfill` embeds old items): it is the cursor by which
    every worker's index picks up new rows."""
    __tablename__ = "item_embeddings"
    __table_args__ = (UniqueConstraint("item_id", "model", name="uq_item_embeddings_item_model"),
                      Index("ix_item_embeddings_model_id", "model", "id"),
                      {"sqlite_autoincrement": True})
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(String(200))
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    item: Mapped[Item] = relationship(back_populates="embeddings")


class Thumbnail(Base):
    """A small JPEG of an analysed image, so pages show it without hot-linking the customer's URL and
    `flask embeddings backfill` can embed old items. `data` is None when THUMBNAIL_DIR holds the file."""
    __tablename__ = "thumbnails"
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes | None] = mapped_column(LargeBinary)


class Change(Base):
    """One entry of the changes feed (app/changes.py): a write that changed what the API answers about
    items, appended in that write's transaction. The ids it names have no foreign keys: an entry outlives
    what it names (`image.deleted` names an image that is gone). `xid` is the writing transaction's id on
    PostgreSQL (0 on SQLite): the feed's order and its visibility horizon."""
    __tablename__ = "changes"
    __table_args__ = (Index("ix_changes_xid_id", "xid", "id"), {"sqlite_autoincrement": True})
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    xid: Mapped[int] = mapped_column(BigInteger)
    type: Mapped[str] = mapped_column(String(32))  # one of changes.CHANGE_TYPES
    image_id: Mapped[int | None] = mapped_column(Integer)
    analysis_id: Mapped[int | None] = mapped_column(Integer)
    item_id: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[dict | None] = mapped_column(JSON)  # analyses a refresh replaced or a delete removed
    created_at: Mapped[dt.datetime] = mapped_column(server_default=func.now())


class ChangesPruned(Base):
    """How far `flask changes prune` has deleted the feed (one row, or none before the first prune): a
    cursor at or before (xid, entry_id) names entries that are gone."""
    __tablename__ = "changes_pruned"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # always 1
    xid: Mapped[int] = mapped_column(BigInteger)
    entry_id: Mapped[int] = mapped_column(Integer)
    pruned_at: Mapped[dt.datetime] = mapped_column()


class ChangeSubscription(Base):
    """A client's webhook for the changes feed (app/change_delivery.py): the feed's entries after `cursor`
    (those of `types`; None: all) are POSTed to `callback_url`, the cursor moving on as each POST is
    acknowledged. One process at a time delivers it: the one holding its lease (`lease_owner` until
    `lease_until`). After a failed POST the next waits (`next_attempt_at`), longer each time."""
    __tablename__ = "change_subscriptions"
    __table_args__ = {"sqlite_autoincrement": True}
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    callback_url: Mapped[str] = mapped_column(Text)
    types: Mapped[list | None] = mapped_column(JSON)
    cursor: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16))  # active, failing
    failures: Mapped[int] = mapped_column(Integer, default=0)  # consecutive failed POSTs
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column()
    delivered: Mapped[int] = mapped_column(Integer, default=0)  # entries acknowledged
    delivered_at: Mapped[dt.datetime | None] = mapped_column()
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[dt.datetime | None] = mapped_column()
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))  # who made it
    created_at: Mapped[dt.datetime] = mapped_column()


# API task name -> (value column, confidence column), in the order the API shows them.
TASK_COLUMNS = {
    "gender": ("gender", "gender_confidence"),
    "masterCategory": ("master_category", "master_category_confidence"),
    "subCategory": ("sub_category", "sub_category_confidence"),
    "articleType": ("article_type", "article_type_confidence"),
    "baseColour": ("base_colour", "base_colour_confidence"),
    "season": ("season", "season_confidence"),
    "usage": ("usage", "usage_confidence"),
}


JOB_STATES = ("queued", "running", "done", "cancelled")


class Job(Base):
    """A batch ingestion: many URLs, processed by queue workers, optionally reported to a webhook."""
    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), index=True)  # one of JOB_STATES
    refresh: Mapped[bool] = mapped_column(default=False)
    callback_url: Mapped[str | None] = mapped_column(Text)
    callback_state: Mapped[str | None] = mapped_column(String(16))  # delivered, failed
    callback_attempts: Mapped[int] = mapped_column(Integer, default=0)
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))  # who made it
    created_at: Mapped[dt.datetime] = mapped_column()
    started_at: Mapped[dt.datetime | None] = mapped_column()
    finished_at: Mapped[dt.datetime | None] = mapped_column()
    urls: Mapped[list["JobUrl"]] = relationship(back_populates="job", cascade="all, delete-orphan",
                                                order_by="JobUrl.position")


class JobIdempotencyKey(Base):
    """A client's Idempotency-Key for a job submission: the same key again gets the same job back, not a second one."""
    __tablename__ = "job_idempotency_keys"
    __table_args__ = (UniqueConstraint("scope", "key", name="uq_job_idempotency_keys_scope_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[str] = mapped_column(String(64))  # whose key: "key-<API key id>", or "anonymous"
    key: Mapped[str] = mapped_column(String(200))
    fingerprint: Mapped[str] = mapped_column(String(64))  # sha256 of the request it came with
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    created_at: Mapped[dt.datetime] = mapped_column()


class JobUrl(Base):
    """One URL of a job and its outcome: an analysis id, or an error code."""
    __tablename__ = "job_urls"
    __table_args__ = (UniqueConstraint("job_id", "position", name="uq_job_urls_position"),
                      Index("ix_job_urls_job_state", "job_id", "state"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    url: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))  # queued, running, done, skipped, failed, cancelled
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    analysis_id: Mapped[int | None] = mapped_column(ForeignKey("analyses.id", ondelete="SET NULL"))
    error_code: Mapped[str | None] = mapped_column(String(32))
    error_detail: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(128))
    updated_at: Mapped[dt.datetime | None] = mapped_column()
    job: Mapped[Job] = relationship(back_populates="urls")
