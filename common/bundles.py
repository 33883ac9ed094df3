"""What every model bundle shares: its error type and the checksum of its weights."""
from __future__ import annotations

import hashlib
from pathlib import Path


class BundleError(ValueError):
    """A bundle cannot be used: missing files, checksum mismatch, or labels that do not fit the model."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
