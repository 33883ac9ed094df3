"""All configuration, from the environment, in one place."""
from __future__ import annotations

import dataclasses
import ipaddress
import os
from pathlib import Path

from .image_formats import ALL_FORMATS, parse_formats

ROOT = Path(__file__).resolve().parents[1]


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _bool(value: str | None, default: bool | None) -> bool | None:
    return default if value is None else value.strip().lower() in _TRUE


def _mirror_view(value: str | None, default: bool | float | None) -> bool | float | None:
    """CLASSIFIER_FLIP_AVERAGE: 1/true/0/false, or a confidence in (0, 1) under which an image gets its
    mirror view (classification.bundle.mirror_policy)."""
    if value is None or not value.strip():
        return default
    if value.strip().lower() in _TRUE + _FALSE:
        return _bool(value, default)
    try:
        confidence = float(value)
    except ValueError:
        raise ValueError(f"CLASSIFIER_FLIP_AVERAGE={value!r}: give 1, 0 or a confidence between 0 and 1") from None
    if not 0 < confidence < 1:
        raise ValueError(f"CLASSIFIER_FLIP_AVERAGE={value!r}: a confidence lies between 0 and 1")
    return confidence


def _input_size(value: str | None) -> tuple[int, int] | None:
    """GARMENT_INPUT_SIZE: HEIGHTxWIDTH in pixels (192x144); unset or empty: None (the bundle's choice)."""
    if value is None or not value.strip():
        return None
    try:
        height, width = (int(part) for part in value.lower().split("x"))
    except ValueError:
        raise ValueError(f"GARMENT_INPUT_SIZE={value!r}: give HEIGHTxWIDTH in pixels, e.g. 192x144") from None
    if not (16 <= height <= 1024 and 16 <= width <= 1024):
        raise ValueError(f"GARMENT_INPUT_SIZE={value!r}: each side between 16 and 1024 pixels")
    return height, width


def _networks(value: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in value.split(",") if part.strip())


@dataclasses.dataclass(frozen=True)
class Settings:
    database_url: str = f"sqlite:///{ROOT / 'instance' / 'fashion-tagger.sqlite3'}"
    classifier_bundle: Path = ROOT / "models" / "fashion-lite0"
    # Average the classifier's outputs over each image and its mirror image (True), only for images it is
    # unsure of (a confidence), or not (False): docs/classifier.md, "The mirror view". None: as the bundle's
    # manifest says (the served bundle: True).
    classifier_flip_average: bool | float | None = None
    # Mix the tags with the labels of the nearest training images when the bundle has a neighbour vote
    # (classification/neighbour_vote.py; docs/classifier.md, "The neighbour vote"). Embeddings are unchanged.
    classifier_neighbour_vote: bool = True
    # Mix some tasks with logistic regressions on the pooled features when the bundle has feature heads
    # (classification/feature_heads.py; docs/classifier.md, "Feature heads"). Embeddings are unchanged.
    classifier_feature_heads: bool = True
    # Mix in a second network, trained on catalogue thumbnails alone, for the whole images the kind gate reads
    # as thumbnails, when the bundle has one (classification/thumbnail_specialist.py). Embeddings are unchanged.
    classifier_thumbnail_specialist: bool = True
    # On the torch backend the classifier runs a channels-first copy of its network with the batch
    # normalisations folded (classification/serving_graph.py): the same outputs, a faster classify stage.
    classifier_serving_graph: bool = True
    # Garment crops are read by the classifier at this (height, width); None: as the bundle's manifest says
    # (inference.garment_input_size, else its input size). docs/detector.md, "Garments read at more pixels".
    garment_input_size: tuple[int, int] | None = None
    # The items people labelled join each worker's neighbour vote (app/label_votes.py), checked for
    # changes at most this often (seconds) before a classifier call.
    label_vote: bool = True
    label_vote_sync_seconds: float = 2.0
    detector_bundle: Path = ROOT / "models" / "ccp-maskrcnn-efflite0"
    detector_min_size: int | None = None  # None: the bundle's own input size
    detector_score_threshold: float | None = None  # None: the bundle's own (chosen on validation data)
    detector_class_agnostic_nms: float | None = None  # IoU of the NMS across classes; None: the bundle's, 1: off
    # The detector backbone's arithmetic: auto (bfloat16 on a CPU with native bfloat16, else float32),
    # float32 or bfloat16; bfloat16 is a faster detect stage for slightly different detections, the same
    # held-out AP (docs/detector.md, "Serving speed"). A GPU runs float16 autocast whichever is named.
    detector_compute_dtype: str = "auto"
    # Garments whose box is narrower or shorter than this (pixels) are not reported: a crop of a few
    # pixels, blown up to the classifier's 80x60, gives labels that are noise.
    garment_min_side: int = 16
    # The detector's class as evidence for a garment's category path (classification/detector_prior.py):
    # off, hard (only the taxonomy paths the class allows can be chosen) or soft:<weight> (other paths'
    # probability times <weight>), for detections scoring at least the min score. Product items never.
    # Default: the best of bench/street_tags.py on the 128 held-out street photos (docs/detector.md): hard,
    # from every served detection, lifts articleType group accuracy 0.703 -> 0.717 (mean over labels) and
    # masterCategory 0.972 -> 0.991 with box crops; soft factors and higher minimum scores lose garments and
    # masterCategory (hard@0.7 gains 0.010 of the mean over labels for 0.006 over garments).
    garment_detector_prior: str = "hard"
    garment_detector_prior_min_score: float = 0.0
    # Which garments it constrains, by the classifier's kind gate on the whole image: street (garments of
    # photos of people, what the detector learnt), a comma-separated list of catalogue/photo/street, or all.
    # On phone photos of one garment the detector's dress class fires on shirts and shorts: with `all`,
    # 380 of 621 garments found on 1,100 held-out phone photos were tagged Dresses (bench/photo_garments.py).
    garment_detector_prior_kinds: str = "street"
    # A garment read together with its whole image (classification/garment_context.py): off, log:<w> or
    # linear:<w>, on the garments of images the kind gate reads as one of the kinds (default: phone photos,
    # where the detector often boxes part of a garment lying flat, and catalogue thumbnails, where the garment
    # found is the product the whole image shows). log:0.35 was chosen cross-half on the held-out phone
    # photos and side-by-side pairs of them (bench/garment_context_probe.py, docs/detector.md).
    garment_context: str = "log:0.35"
    garment_context_kinds: str = "photo,catalogue"
    # The other direction (classification/product_garment.py): an image's own category pooled with its one
    # garment's reading (the garment cut out, read at the garment input size), on images the kind gate reads as
    # these kinds whose detections leave exactly one garment once fragments are dropped. off, log:<w> or
    # linear:<w> (w: the garment's share). log:0.35, the garment context's pooling the other way, is one of the
    # two rules chosen cross-half on the held-out phone photos (bench/product_garment_probe.py, docs/detector.md).
    product_garment: str = "log:0.35"
    product_garment_kinds: str = "photo"
    # Parts of one garment boxed again as more garments (app/fragments.py): on images the kind gate reads as
    # one of the kinds (default: phone photos and catalogue thumbnails, photos of one product), a garment
    # whose box lies at least this share inside a larger garment's box is dropped; off: every detection is
    # reported. 0.8 is set by geometry, not tuned: four
    # fifths of its box inside another's (bench/photo_garments.py measures it, docs/detector.md).
    garment_fragments: str = "0.8"
    garment_fragment_kinds: str = "photo,catalogue"
    # How a garment is cut out for the classifier (app/crops.py): box (its box with 10% of context, as the
    # classifier's street crops are cut) or masked (outside its mask painted white). Measured best: box.
    garment_crop: str = "box"
    device: str = "auto"
    # Cross-request batching (app/batching.py): 1 turns it off.
    batch_max_images: int = 1
    batch_max_wait_ms: float = 5.0
    # Fetching (app/fetch.py): the security boundary.
    fetch_allow_private: tuple = ()
    fetch_max_bytes: int = 20 * 1024 * 1024
    fetch_connect_timeout: float = 3.0
    fetch_read_timeout: float = 5.0
    fetch_deadline: float = 15.0
    fetch_max_redirects: int = 3
    max_image_pixels: int = 40_000_000
    image_formats: tuple[str, ...] = ALL_FORMATS  # IMAGE_FORMATS=jpeg,png,webp: refuse the others (415)
    user_agent: str = "fashion-tagger/1.0 (+image tagging)"
    # Serving.
    preload_models: bool = False  # gunicorn loads them after fork (gunicorn.conf.py)
    log_level: str = "INFO"
    items_page_size: int = 50
    # Batch jobs (app/jobs). No broker: an in-process queue (see README for what it gives up).
    broker_url: str | None = None
    job_queue: str = "fashion-tagger"
    job_max_urls: int = 10_000
    job_batch_size: int = 8
    job_max_attempts: int = 3
    job_retry_backoff: float = 2.0  # seconds before the first retry; doubles each attempt
    job_visibility_timeout: int = 300  # seconds before a killed worker's task is delivered again
    job_stall_timeout: int = 600  # seconds without progress before a job's open URLs are enqueued again (0: never)
    embedded_job_threads: int = 1
    webhook_secret: str = "change-me"
    webhook_max_attempts: int = 4
    webhook_backoff: float = 1.0
    # Changes-feed webhooks (app/change_delivery.py): how often each serving process looks for entries to
    # POST (0: this process delivers none), and the longest wait after repeated failures.
    change_delivery_interval: float = 2.0
    change_delivery_max_backoff: float = 300.0
    # Outages of the database or the broker answer 503 with this Retry-After (seconds).
    retry_after: int = 5
    database_connect_timeout: int = 5
    broker_timeout: float = 2.0  # seconds to reach the broker before a submission answers 503
    # Access (app/auth.py, app/limits.py). Off by default: a first run on localhost needs no key.
    api_keys_required: bool = False
    api_key_rate_limit: str = "120/minute"  # requests per key, unless the key has its own
    api_key_job_url_quota: str = "20000/day"  # job URLs per key, unless the key has its own
    rate_limit_storage_url: str | None = None  # None: the broker's Redis when there is one, else memory
    metrics_token: str | None = None  # when set, /metrics needs Authorization: Bearer <token>
    # Once the models have loaded, freeze what is alive out of the garbage collector's sight (app/gc_freeze.py).
    gc_freeze: bool = True
    # Thumbnails (app/thumbnails.py): longest side in pixels (0: none kept), JPEG quality, and where:
    # None keeps them in the database (one place to back up; fine to ~100k images), a folder otherwise.
    thumbnail_max_side: int = 384
    thumbnail_quality: int = 85
    thumbnail_dir: Path | None = None
    # Similarity search (app/similarity.py): exact search up to this many vectors, an inverted file
    # (IVF) above, scanning `nprobe` cells; both from bench/similarity_index.py (docs/similarity.md).
    similarity_build_at_start: bool = True  # off for processes that never search (Celery workers)
    similarity_exact_max: int = 30_000
    similarity_nprobe: int = 16
    similarity_max_k: int = 100
    similarity_overfetch: int = 10  # filtered searches ask the index for k x this many, then filter
    similarity_filtered_exact_max: int = 20_000  # few matches: exact search over the filtered subset
    similarity_query_expansion: int = 20  # search again from the query + its nearest items (0: off)
    # The catalogue page (app/catalogue). With API keys required, people sign in with a key once and
    # get a session cookie signed with SECRET_KEY (instance/secret_key is made when unset).
    catalogue_enabled: bool = True
    catalogue_page_size: int = 48
    catalogue_cookie_secure: bool = False  # true behind HTTPS: the session cookie is never sent in clear
    secret_key: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        defaults = cls()
        min_size = env.get("DETECTOR_MIN_SIZE")
        return cls(
            database_url=env.get("DATABASE_URL") or defaults.database_url,
            classifier_bundle=Path(env.get("CLASSIFIER_BUNDLE", defaults.classifier_bundle)),
            classifier_flip_average=_mirror_view(env.get("CLASSIFIER_FLIP_AVERAGE"), defaults.classifier_flip_average),
            classifier_neighbour_vote=_bool(env.get("CLASSIFIER_NEIGHBOUR_VOTE"), defaults.classifier_neighbour_vote),
            classifier_feature_heads=_bool(env.get("CLASSIFIER_FEATURE_HEADS"), defaults.classifier_feature_heads),
            classifier_thumbnail_specialist=_bool(env.get("CLASSIFIER_THUMBNAIL_SPECIALIST"),
                                                  defaults.classifier_thumbnail_specialist),
            classifier_serving_graph=_bool(env.get("CLASSIFIER_SERVING_GRAPH"), defaults.classifier_serving_graph),
            garment_input_size=_input_size(env.get("GARMENT_INPUT_SIZE")) or defaults.garment_input_size,
            label_vote=_bool(env.get("LABEL_VOTE"), defaults.label_vote),
            label_vote_sync_seconds=float(env.get("LABEL_VOTE_SYNC_SECONDS", defaults.label_vote_sync_seconds)),
            detector_bundle=Path(env.get("DETECTOR_BUNDLE", defaults.detector_bundle)),
            detector_min_size=int(min_size) if min_size else None,
            detector_score_threshold=(float(env["DETECTOR_SCORE_THRESHOLD"]) if env.get("DETECTOR_SCORE_THRESHOLD")
                                      else defaults.detector_score_threshold),
            detector_class_agnostic_nms=(float(env["DETECTOR_CLASS_AGNOSTIC_NMS"]) if env.get("DETECTOR_CLASS_AGNOSTIC_NMS")
                                         else defaults.detector_class_agnostic_nms),
            detector_compute_dtype=env.get("DETECTOR_COMPUTE_DTYPE") or defaults.detector_compute_dtype,
            garment_min_side=int(env.get("GARMENT_MIN_SIDE", defaults.garment_min_side)),
            garment_detector_prior=env.get("GARMENT_DETECTOR_PRIOR") or defaults.garment_detector_prior,
            garment_detector_prior_min_score=float(env.get("GARMENT_DETECTOR_PRIOR_MIN_SCORE",
                                                           defaults.garment_detector_prior_min_score)),
            garment_detector_prior_kinds=(env.get("GARMENT_DETECTOR_PRIOR_KINDS")
                                          or defaults.garment_detector_prior_kinds),
            garment_context=env.get("GARMENT_CONTEXT") or defaults.garment_context,
            garment_context_kinds=env.get("GARMENT_CONTEXT_KINDS") or defaults.garment_context_kinds,
            product_garment=env.get("PRODUCT_GARMENT") or defaults.product_garment,
            product_garment_kinds=env.get("PRODUCT_GARMENT_KINDS") or defaults.product_garment_kinds,
            garment_fragments=env.get("GARMENT_FRAGMENTS") or defaults.garment_fragments,
            garment_fragment_kinds=env.get("GARMENT_FRAGMENT_KINDS") or defaults.garment_fragment_kinds,
            garment_crop=env.get("GARMENT_CROP") or defaults.garment_crop,
            device=env.get("DEVICE", defaults.device),
            batch_max_images=int(env.get("BATCH_MAX_IMAGES", defaults.batch_max_images)),
            batch_max_wait_ms=float(env.get("BATCH_MAX_WAIT_MS", defaults.batch_max_wait_ms)),
            fetch_allow_private=_networks(env.get("FETCH_ALLOW_PRIVATE", "")),
            fetch_max_bytes=int(env.get("FETCH_MAX_BYTES", defaults.fetch_max_bytes)),
            fetch_connect_timeout=float(env.get("FETCH_CONNECT_TIMEOUT", defaults.fetch_connect_timeout)),
            fetch_read_timeout=float(env.get("FETCH_READ_TIMEOUT", defaults.fetch_read_timeout)),
            fetch_deadline=float(env.get("FETCH_DEADLINE", defaults.fetch_deadline)),
            fetch_max_redirects=int(env.get("FETCH_MAX_REDIRECTS", defaults.fetch_max_redirects)),
            max_image_pixels=int(env.get("MAX_IMAGE_PIXELS", defaults.max_image_pixels)),
            image_formats=parse_formats(env["IMAGE_FORMATS"]) if env.get("IMAGE_FORMATS") else defaults.image_formats,
            preload_models=_bool(env.get("PRELOAD_MODELS"), defaults.preload_models),
            log_level=env.get("LOG_LEVEL", defaults.log_level),
            broker_url=env.get("BROKER_URL") or None,
            job_queue=env.get("JOB_QUEUE", defaults.job_queue),
            job_max_urls=int(env.get("JOB_MAX_URLS", defaults.job_max_urls)),
            job_batch_size=int(env.get("JOB_BATCH_SIZE", defaults.job_batch_size)),
            job_max_attempts=int(env.get("JOB_MAX_ATTEMPTS", defaults.job_max_attempts)),
            job_retry_backoff=float(env.get("JOB_RETRY_BACKOFF", defaults.job_retry_backoff)),
            job_visibility_timeout=int(env.get("JOB_VISIBILITY_TIMEOUT", defaults.job_visibility_timeout)),
            job_stall_timeout=int(env.get("JOB_STALL_TIMEOUT", defaults.job_stall_timeout)),
            embedded_job_threads=int(env.get("EMBEDDED_JOB_THREADS", defaults.embedded_job_threads)),
            webhook_secret=env.get("WEBHOOK_SECRET", defaults.webhook_secret),
            webhook_max_attempts=int(env.get("WEBHOOK_MAX_ATTEMPTS", defaults.webhook_max_attempts)),
            webhook_backoff=float(env.get("WEBHOOK_BACKOFF", defaults.webhook_backoff)),
            change_delivery_interval=float(env.get("CHANGE_DELIVERY_INTERVAL", defaults.change_delivery_interval)),
            change_delivery_max_backoff=float(env.get("CHANGE_DELIVERY_MAX_BACKOFF", defaults.change_delivery_max_backoff)),
            retry_after=int(env.get("RETRY_AFTER", defaults.retry_after)),
            database_connect_timeout=int(env.get("DATABASE_CONNECT_TIMEOUT", defaults.database_connect_timeout)),
            broker_timeout=float(env.get("BROKER_TIMEOUT", defaults.broker_timeout)),
            api_keys_required=_bool(env.get("API_KEYS_REQUIRED"), defaults.api_keys_required),
            api_key_rate_limit=env.get("API_KEY_RATE_LIMIT") or defaults.api_key_rate_limit,
            api_key_job_url_quota=env.get("API_KEY_JOB_URL_QUOTA") or defaults.api_key_job_url_quota,
            rate_limit_storage_url=env.get("RATE_LIMIT_STORAGE_URL") or None,
            metrics_token=env.get("METRICS_TOKEN") or None,
            gc_freeze=_bool(env.get("GC_FREEZE"), defaults.gc_freeze),
            thumbnail_max_side=int(env.get("THUMBNAIL_MAX_SIDE", defaults.thumbnail_max_side)),
            thumbnail_quality=int(env.get("THUMBNAIL_QUALITY", defaults.thumbnail_quality)),
            thumbnail_dir=Path(env["THUMBNAIL_DIR"]) if env.get("THUMBNAIL_DIR") else None,
            similarity_build_at_start=_bool(env.get("SIMILARITY_BUILD_AT_START"), defaults.similarity_build_at_start),
            similarity_exact_max=int(env.get("SIMILARITY_EXACT_MAX", defaults.similarity_exact_max)),
            similarity_nprobe=int(env.get("SIMILARITY_NPROBE", defaults.similarity_nprobe)),
            similarity_max_k=int(env.get("SIMILARITY_MAX_K", defaults.similarity_max_k)),
            similarity_overfetch=int(env.get("SIMILARITY_OVERFETCH", defaults.similarity_overfetch)),
            similarity_filtered_exact_max=int(env.get("SIMILARITY_FILTERED_EXACT_MAX",
                                                      defaults.similarity_filtered_exact_max)),
            similarity_query_expansion=int(env.get("SIMILARITY_QUERY_EXPANSION", defaults.similarity_query_expansion)),
            catalogue_enabled=_bool(env.get("CATALOGUE_ENABLED"), defaults.catalogue_enabled),
            catalogue_cookie_secure=_bool(env.get("CATALOGUE_COOKIE_SECURE"), defaults.catalogue_cookie_secure),
            catalogue_page_size=int(env.get("CATALOGUE_PAGE_SIZE", defaults.catalogue_page_size)),
            secret_key=env.get("SECRET_KEY") or None,
        )

    def replace(self, **changes) -> "Settings":
        if isinstance(changes.get("fetch_allow_private"), str):
            changes["fetch_allow_private"] = _networks(changes["fetch_allow_private"])
        if isinstance(changes.get("image_formats"), str):
            changes["image_formats"] = parse_formats(changes["image_formats"])
        return dataclasses.replace(self, **changes)
