"""Which stored images a new model bundle has yet to tag: `flask retag` brings them up to date.

A new classifier or detector bundle (or a serving option that is part of the analysis key: mirror view,
neighbour vote, detector prior, garment context, garment crop) tags new requests at once, but every image stored before
keeps the tags of the bundles that analysed it, and catalogue listings and recommenders read those.
An image is *stale* when its current analysis (app.models.is_current_analysis) was made under another
key than the serving pipeline's. `flask retag` submits the stale images' source URLs (each image's URL
seen last) as ordinary batch jobs: each URL is fetched again through the safe fetcher and analysed by
the serving bundles; the new analysis becomes the image's current one (the old one is kept, listed by
GET /v1/images/<id>), people's labels carry over, and the changes feed says which analysis it
supersedes. Images stored from uploads have no URL to fetch again: they are counted, to be uploaded
again by their owner.
"""
from __future__ import annotations

import dataclasses
from collections import Counter

from sqlalchemy import select
from sqlalchemy.orm import Session

from .analysis import COLOUR_CONVERTED
from .models import Analysis, ImageSource, is_current_analysis

CHUNK = 1_000  # image ids per IN (...) list


@dataclasses.dataclass
class RetagPlan:
    serving_key: str
    current: int = 0  # images whose current analysis is the serving pipeline's
    stale_by_key: Counter = dataclasses.field(default_factory=Counter)  # analysis key -> stale images
    urls: list[str] = dataclasses.field(default_factory=list)  # one per stale image that has a URL
    without_url: list[int] = dataclasses.field(default_factory=list)  # stale image ids stored from uploads

    @property
    def stale(self) -> int:
        return sum(self.stale_by_key.values())


def serving_keys(bundle_key: str) -> tuple[str, str]:
    """The analysis keys the serving pipeline stores (app.analysis.analysis_key): its own, and its own for
    photos whose embedded colour profile was converted."""
    return bundle_key, bundle_key + COLOUR_CONVERTED


def plan(session: Session, bundle_key: str) -> RetagPlan:
    """Every stored image's current analysis against the serving key; the stale ones' latest URLs."""
    result = RetagPlan(bundle_key)
    keys = serving_keys(bundle_key)
    stale_images = []
    for image_id, key in session.execute(select(Analysis.image_id, Analysis.bundle_key)
                                         .where(is_current_analysis()).order_by(Analysis.image_id)):
        if key in keys:
            result.current += 1
        else:
            result.stale_by_key[key] += 1
            stale_images.append(image_id)
    latest_url: dict[int, str] = {}
    for start in range(0, len(stale_images), CHUNK):
        chunk = stale_images[start:start + CHUNK]
        rows = session.execute(select(ImageSource.image_id, ImageSource.url).where(ImageSource.image_id.in_(chunk))
                               .order_by(ImageSource.last_seen_at, ImageSource.id))
        latest_url |= {image_id: url for image_id, url in rows}  # ascending: the last one seen wins
    for image_id in stale_images:
        if image_id in latest_url:
            result.urls.append(latest_url[image_id])
        else:
            result.without_url.append(image_id)
    session.rollback()  # end the read transaction
    return result
