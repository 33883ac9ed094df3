"""The one code path from image bytes to stored analyses, used by POST /v1/analyses, the CLI and the
job workers alike."""
from __future__ import annotations

import dataclasses
import time

from sqlalchemy.orm import Session

from . import thumbnails
from .config import Settings
from .errors import ApiError
from .fetch import FetchedImage, colour_converted, decode
from .pipeline import Pipeline
from .store import analysis_json, find_analysis, remember_source, save_analysis


# Photos whose embedded colour profile decoding converts (to sRGB) are analysed under their own key:
# stored before the conversion existed, their analysis read the stored numbers as sRGB and is made again
# on the next request, while every other image keeps its stored one.
COLOUR_CONVERTED = "|colour:srgb"


def analysis_key(pipeline: Pipeline, fetched: FetchedImage, settings: Settings) -> str:
    """What a stored analysis of these bytes must have been made with to be served again."""
    return pipeline.bundle_key + (COLOUR_CONVERTED if colour_converted(fetched.data, settings) else "")


@dataclasses.dataclass
class Outcome:
    analysis: dict | None = None
    created: bool = False
    error: ApiError | None = None


def analyse_images(session: Session, pipeline: Pipeline, settings: Settings, inputs: list[FetchedImage],
                   refresh: bool, timings: list[dict] | None = None, api_key_id: int | None = None) -> list[Outcome]:
    """Analyse a batch of downloaded images; already-analysed ones (same bytes, same bundles) are read
    back from storage with no model work unless `refresh`. Each image is stored in its own transaction;
    new analyses record `api_key_id`, the key of the client that asked for them."""
    timings = timings if timings is not None else [{} for _ in inputs]
    outcomes = [Outcome() for _ in inputs]
    pending = []  # (index, sha256, analysis key, decoded image)
    first_of: dict[str, int] = {}  # identical bytes twice in one batch are analysed once
    duplicates: list[tuple[int, int]] = []
    keys: dict[int, str] = {}
    for index, fetched in enumerate(inputs):
        if fetched.sha256 in first_of:
            duplicates.append((index, first_of[fetched.sha256]))
            continue
        first_of[fetched.sha256] = index
        keys[index] = analysis_key(pipeline, fetched, settings)
        if not refresh:
            existing = find_analysis(session, fetched.sha256, keys[index])
            if existing is not None:
                remember_source(session, existing.image_id, fetched.url)
                _keep_thumbnail(session, settings, existing.image_id, fetched)
                session.commit()
                outcomes[index] = Outcome(analysis_json(existing), False)
                continue
        start = time.perf_counter()
        try:
            image = decode(fetched.data, settings)
        except ApiError as error:
            outcomes[index] = Outcome(error=error)
            continue
        timings[index]["decode"] = round((time.perf_counter() - start) * 1000, 2)
        pending.append((index, fetched.sha256, keys[index], image))
    if pending:
        _analyse_and_store(session, pipeline, settings, inputs, pending, outcomes, timings, refresh, api_key_id)
    for index, original in duplicates:
        outcomes[index] = dataclasses.replace(outcomes[original], created=False)
        if outcomes[index].analysis and inputs[index].url:
            remember_source(session, find_analysis(session, inputs[index].sha256, keys[original]).image_id,
                            inputs[index].url)
            session.commit()
    return outcomes


def _analyse_and_store(session, pipeline, settings, inputs, pending, outcomes, timings, refresh, api_key_id) -> None:
    stage_times: dict = {}
    items = pipeline.analyse_many([image for _, _, _, image in pending], stage_times)
    for (index, sha256, key, image), image_items in zip(pending, items):
        stages = timings[index] | {k: round(v / len(pending), 2) for k, v in stage_times.items()}
        stages["total"] = round(sum(stages.values()), 2)
        if len(pending) > 1:
            stages["batch_size"] = len(pending)
        analysis, created = save_analysis(
            session, sha256=sha256, width=image.shape[1], height=image.shape[0], url=inputs[index].url,
            bundle_key=key, bundles=pipeline.bundles, timings=stages, items=image_items,
            refresh=refresh, api_key_id=api_key_id, embedding_model=pipeline.embedding_model,
            thumbnail=thumbnails.make(image, settings.thumbnail_max_side, settings.thumbnail_quality),
            thumbnail_dir=settings.thumbnail_dir)
        outcomes[index] = Outcome(analysis_json(analysis), created)


def _keep_thumbnail(session, settings: Settings, image_id: int, fetched: FetchedImage) -> None:
    """An image analysed before thumbnails were kept gets one when it is seen again (no model work)."""
    if settings.thumbnail_max_side <= 0 or thumbnails.exists(session, image_id):
        return
    try:
        image = decode(fetched.data, settings)
    except ApiError:
        return
    thumbnail = thumbnails.make(image, settings.thumbnail_max_side, settings.thumbnail_quality)
    thumbnails.put(session, image_id, fetched.sha256, thumbnail, settings.thumbnail_dir)
