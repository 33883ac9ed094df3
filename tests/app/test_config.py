import ipaddress
from pathlib import Path

import pytest

from app.config import Settings


def test_settings_from_the_environment():
    settings = Settings.from_env({"DATABASE_URL": "postgresql+psycopg://u@h/db", "FETCH_ALLOW_PRIVATE": "127.0.0.0/8, ::1",
                                  "FETCH_MAX_BYTES": "1000", "DETECTOR_MIN_SIZE": "256", "BROKER_URL": "redis://r:6379/0",
                                  "CLASSIFIER_BUNDLE": "/bundles/c", "BATCH_MAX_IMAGES": "8", "BATCH_MAX_WAIT_MS": "2.5"})
    assert settings.database_url == "postgresql+psycopg://u@h/db" and settings.fetch_max_bytes == 1000
    assert settings.fetch_allow_private == (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
    assert settings.detector_min_size == 256 and settings.broker_url == "redis://r:6379/0"
    assert settings.classifier_bundle == Path("/bundles/c")
    assert settings.batch_max_images == 8 and settings.batch_max_wait_ms == 2.5
    assert Settings.from_env({"DETECTOR_CLASS_AGNOSTIC_NMS": "0.6"}).detector_class_agnostic_nms == 0.6
    assert Settings.from_env({}).detector_compute_dtype == "auto"
    assert Settings.from_env({"DETECTOR_COMPUTE_DTYPE": "bfloat16"}).detector_compute_dtype == "bfloat16"
    assert Settings.from_env({"CLASSIFIER_FLIP_AVERAGE": "1"}).classifier_flip_average is True
    assert Settings.from_env({"CLASSIFIER_FLIP_AVERAGE": "false"}).classifier_flip_average is False
    assert Settings.from_env({"CLASSIFIER_FLIP_AVERAGE": "0.8"}).classifier_flip_average == 0.8
    for bad in ("1.5", "often"):
        with pytest.raises(ValueError, match="CLASSIFIER_FLIP_AVERAGE"):
            Settings.from_env({"CLASSIFIER_FLIP_AVERAGE": bad})
    assert Settings.from_env({}).classifier_neighbour_vote is True
    assert Settings.from_env({"CLASSIFIER_NEIGHBOUR_VOTE": "off"}).classifier_neighbour_vote is False
    assert Settings.from_env({}).classifier_feature_heads is True
    assert Settings.from_env({}).garment_input_size is None  # the bundle's choice
    assert Settings.from_env({"GARMENT_INPUT_SIZE": "224x168"}).garment_input_size == (224, 168)
    for bad in ("224", "big", "8x6", "224x168x3"):
        with pytest.raises(ValueError, match="GARMENT_INPUT_SIZE"):
            Settings.from_env({"GARMENT_INPUT_SIZE": bad})
    assert Settings.from_env({"CLASSIFIER_FEATURE_HEADS": "0"}).classifier_feature_heads is False
    assert Settings.from_env({}).classifier_thumbnail_specialist is True
    assert Settings.from_env({"CLASSIFIER_THUMBNAIL_SPECIALIST": "0"}).classifier_thumbnail_specialist is False


def test_embedded_defaults():
    settings = Settings.from_env({})
    assert settings.database_url.startswith("sqlite:///") and settings.database_url.endswith("fashion-tagger.sqlite3")
    assert settings.broker_url is None and settings.fetch_allow_private == ()
    assert settings.fetch_max_redirects == 3 and settings.fetch_max_bytes == 20 * 1024 * 1024
    assert settings.batch_max_images == 1  # cross-request batching off unless asked for
    assert settings.garment_min_side == 16 and settings.detector_score_threshold is None  # the bundle's
    assert settings.detector_class_agnostic_nms is None  # the bundle's
    assert settings.classifier_bundle.name == "fashion-lite0"  # the pretrained trunk serves by default
    assert settings.classifier_flip_average is None  # as the bundle's manifest says
    assert settings.detector_bundle.name == "ccp-maskrcnn-efflite0"  # and the ImageNet-backed detector
    assert (settings.detector_bundle / "manifest.json").is_file()


def test_similarity_thumbnail_and_catalogue_settings():
    settings = Settings.from_env({"THUMBNAIL_MAX_SIDE": "0", "THUMBNAIL_DIR": "/var/thumbs", "SIMILARITY_EXACT_MAX": "500",
                                  "SIMILARITY_NPROBE": "32", "SIMILARITY_BUILD_AT_START": "false", "CATALOGUE_ENABLED": "no",
                                  "SECRET_KEY": "s", "CATALOGUE_COOKIE_SECURE": "true"})
    assert settings.thumbnail_max_side == 0 and settings.thumbnail_dir == Path("/var/thumbs")
    assert settings.similarity_exact_max == 500 and settings.similarity_nprobe == 32
    assert not settings.similarity_build_at_start and not settings.catalogue_enabled
    assert settings.secret_key == "s" and settings.catalogue_cookie_secure
    defaults = Settings.from_env({})
    assert defaults.thumbnail_max_side == 384 and defaults.thumbnail_dir is None  # in the database
    assert defaults.similarity_exact_max == 30_000 and defaults.catalogue_enabled and defaults.secret_key is None
