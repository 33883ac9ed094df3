"""A second network for the whole images the kind gate reads as catalogue thumbnails.

The served network reads thumbnails, phone photos and street crops alike, and it underfits the catalogue
(docs/classifier-runs.md: its training thumbnails read little better than its test ones). A specialist,
trained from the served weights on thumbnails alone and given a neighbour vote and feature heads of its own
(fitted in its own feature space), reads them better; it reads photos worse, so it only speaks as far as
the served kind gate says an image is a thumbnail:

    served' = served + w g (specialist - served without people's labels)

g the gate's catalogue probability, w the manifest's weight. Without rows from people's labels in the
served vote (app/label_votes.py) this is (1 - w g) served + w g specialist; with them, what those rows
moved stays moved. Only images with g >= min_gate are read by the specialist at all (the rest keep the
served tags and pay nothing): the gate reads 99.9% of held-out thumbnails over one half, and 0.6% of phone
photos and 0.3% of street crops.

The specialist is a bundle of its own in the served bundle's `thumbnail_specialist/` folder, named in the
served manifest (`python -m classification.attach_thumbnail_specialist`). Garment crops never reach it.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from common.bundles import BundleError

FOLDER = "thumbnail_specialist"
MANIFEST_KEY = "thumbnail_specialist"


@dataclass(frozen=True)
class SpecialistSettings:
    folder: Path
    weight: float
    min_gate: float
    version: str


def settings_of(bundle_dir: Path, manifest: Mapping) -> SpecialistSettings | None:
    """The specialist a served manifest names, or None; refused when named but missing or not what it recorded."""
    entry = manifest.get(MANIFEST_KEY)
    if not entry:
        return None
    folder = Path(bundle_dir) / entry.get("folder", FOLDER)
    specialist_manifest = folder / "manifest.json"
    if not specialist_manifest.is_file():
        raise BundleError(f"{bundle_dir}: the manifest names a thumbnail specialist but {folder} has no manifest")
    weight, min_gate = float(entry["weight"]), float(entry["min_gate"])
    if not (0 < weight <= 1 and 0 <= min_gate <= 1):
        raise BundleError(f"{bundle_dir}: thumbnail specialist weight {weight} / min_gate {min_gate} out of range")
    version = specialist_version(json.loads(specialist_manifest.read_text()), weight, min_gate)
    if entry.get("version") != version:
        raise BundleError(f"{folder}: the thumbnail specialist is version {version}, the manifest recorded "
                          f"{entry.get('version')} (replaced files)")
    return SpecialistSettings(folder, weight, min_gate, version)


def specialist_version(specialist_manifest: Mapping, weight: float, min_gate: float) -> str:
    """What names the specialist's contribution: its weights, its vote and heads, and how it is mixed in."""
    parts: dict[str, Any] = {"weights": specialist_manifest["version"], "weight": weight, "min_gate": min_gate,
                             "inference": specialist_manifest.get("inference", {})}
    for key in ("neighbour_vote", "feature_heads"):
        parts[key] = (specialist_manifest.get(key) or {}).get("version")
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def specialist_suffix(version: str | None) -> str:
    """What a tag version gains from a thumbnail specialist: "+thumbs-<version>", or nothing."""
    return f"+thumbs-{version}" if version else ""


def rows_to_read(catalogue_probability: np.ndarray, min_gate: float) -> np.ndarray:
    """The rows the specialist reads: those whose gate catalogue probability reaches min_gate."""
    return np.flatnonzero(np.asarray(catalogue_probability) >= min_gate)


def corrected(served: Mapping[str, np.ndarray], served_without_people: Mapping[str, np.ndarray],
              specialist: Mapping[str, np.ndarray], rows: np.ndarray, catalogue_probability: np.ndarray,
              weight: float) -> dict[str, np.ndarray]:
    """`served` with the specialist's reading of `rows` mixed in (the module's formula), task by task; rows'
    probabilities clipped at zero and renormalised (people's rows can push a class below what the
    specialist takes away)."""
    out = {task: np.array(values, np.float32, copy=True) for task, values in served.items()}
    if not len(rows):
        return out
    share = (weight * np.asarray(catalogue_probability, np.float32)[rows])[:, None]
    for task in out:
        if task not in specialist:
            continue
        moved = out[task][rows] + share * (specialist[task] - served_without_people[task][rows])
        moved = np.clip(moved, 0.0, None)
        out[task][rows] = moved / np.maximum(moved.sum(axis=1, keepdims=True), 1e-12)
    return out
