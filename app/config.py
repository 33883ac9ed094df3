"""All configuration, from the environment, in one place."""
from __future__ import annotations

import dataclasses
import ipaddress
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bool(value: str | None, default: bool) -> bool:
    return default if value is None else value.strip().lower() in ("1", "true", "yes", "on")


def _networks(value: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in value.split(",") if part.strip())


@dataclasses.dataclass(frozen=True)
class Settings:
    database_url: str = f"sqlite:///{ROOT / 'instance' / 'fashion-tagger.sqlite3'}"
    classifier_bundle: Path = ROOT / "models" / "fashion-vgg19"
    detector_bundle: Path = ROOT / "models" / "ccp-maskrcnn-mobilenet"
    detector_min_size: int | None = None  # None: the bundle's own input size
    detector_score_threshold: float = 0.5
    device: str = "auto"
    # Fetching (app/fetch.py): the security boundary.
    fetch_allow_private: tuple = ()
    fetch_max_bytes: int = 20 * 1024 * 1024
    fetch_connect_timeout: float = 3.0
    fetch_read_timeout: float = 5.0
    fetch_deadline: float = 15.0
    fetch_max_redirects: int = 3
    max_image_pixels: int = 40_000_000
    user_agent: str = "fashion-tagger/1.0 (+image tagging)"
    # Serving.
    preload_models: bool = False  # gunicorn loads them after fork (gunicorn.conf.py)
    log_level: str = "INFO"
    items_page_size: int = 50

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        defaults = cls()
        min_size = env.get("DETECTOR_MIN_SIZE")
        return cls(
            database_url=env.get("DATABASE_URL") or defaults.database_url,
            classifier_bundle=Path(env.get("CLASSIFIER_BUNDLE", defaults.classifier_bundle)),
            detector_bundle=Path(env.get("DETECTOR_BUNDLE", defaults.detector_bundle)),
            detector_min_size=int(min_size) if min_size else None,
            detector_score_threshold=float(env.get("DETECTOR_SCORE_THRESHOLD", defaults.detector_score_threshold)),
            device=env.get("DEVICE", defaults.device),
            fetch_allow_private=_networks(env.get("FETCH_ALLOW_PRIVATE", "")),
            fetch_max_bytes=int(env.get("FETCH_MAX_BYTES", defaults.fetch_max_bytes)),
            fetch_connect_timeout=float(env.get("FETCH_CONNECT_TIMEOUT", defaults.fetch_connect_timeout)),
            fetch_read_timeout=float(env.get("FETCH_READ_TIMEOUT", defaults.fetch_read_timeout)),
            fetch_deadline=float(env.get("FETCH_DEADLINE", defaults.fetch_deadline)),
            fetch_max_redirects=int(env.get("FETCH_MAX_REDIRECTS", defaults.fetch_max_redirects)),
            max_image_pixels=int(env.get("MAX_IMAGE_PIXELS", defaults.max_image_pixels)),
            preload_models=_bool(env.get("PRELOAD_MODELS"), defaults.preload_models),
            log_level=env.get("LOG_LEVEL", defaults.log_level),
        )

    def replace(self, **changes) -> "Settings":
        if isinstance(changes.get("fetch_allow_private"), str):
            changes["fetch_allow_private"] = _networks(changes["fetch_allow_private"])
        return dataclasses.replace(self, **changes)
