"""A classifier bundle on disk: `manifest.json` + `weights.npz` (+ split and reports).

Weights are stored as one numpy array per model variable, in float16 by default, so a bundle saved
under one Keras backend loads under the other. Loading checks every head's size against the
manifest's labels and refuses a mismatch: labels drifting from the model silently shift every answer.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Mapping, Sequence

import keras
import numpy as np

from common.bundles import BundleError, sha256_file

from .model import build_model
from .taxonomy import TASKS, Taxonomy

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.npz"


def save_weights(model: keras.Model, path: Path, dtype: str = "float16") -> None:
    arrays = {}
    for i, variable in enumerate(model.weights):
        value = keras.ops.convert_to_numpy(variable)
        if np.issubdtype(value.dtype, np.floating):
            value = value.astype(dtype)
        arrays[f"{i:04d}:{variable.path}"] = value
    np.savez(path, **arrays)


def load_weights(model: keras.Model, path: Path, taxonomy: Taxonomy | None = None) -> None:
    with np.load(path) as archive:
        stored = [archive[key] for key in sorted(archive.files)]
        names = sorted(archive.files)
    if taxonomy is not None:
        check_heads(names, stored, taxonomy)
    if len(stored) != len(model.weights):
        raise BundleError(f"{path}: {len(stored)} arrays for a model with {len(model.weights)} variables")
    for name, value, variable in zip(names, stored, model.weights):
        if tuple(value.shape) != tuple(variable.shape):
            raise BundleError(f"{path}: {name} has shape {value.shape}, model expects {tuple(variable.shape)}")
        variable.assign(value.astype(variable.dtype))


def check_heads(names: list[str], arrays: list[np.ndarray], taxonomy: Taxonomy) -> None:
    """Each task head's bias length must equal the manifest's label count for that task."""
    for task in TASKS:
        bias = [a for n, a in zip(names, arrays) if n.split(":", 1)[1] == f"{task}/bias"]
        if not bias:
            raise BundleError(f"weights have no output head for task {task!r}")
        if len(bias[0]) != taxonomy.num_classes(task):
            raise BundleError(
                f"task {task!r}: the weights' head has {len(bias[0])} outputs but the manifest lists "
                f"{taxonomy.num_classes(task)} labels; refusing a bundle whose labels do not match its model")


def write_bundle(folder: Path, model: keras.Model, taxonomy: Taxonomy, config: dict, extra: dict,
                 dtype: str = "float16") -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(model, folder / WEIGHTS, dtype=dtype)
    weights_sha = sha256_file(folder / WEIGHTS)
    manifest = {
        "format_version": FORMAT_VERSION,
        "kind": "classifier",
        "name": folder.name,
        # The version changes whenever the weights do; stored analyses record it.
        "version": weights_sha[:12],
        "model": config,
        "taxonomy": taxonomy.to_dict(),
        "weights": {"file": WEIGHTS, "dtype": dtype, "sha256": weights_sha},
        **extra,
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise BundleError(f"{folder}: no {MANIFEST}; not a classifier bundle")
    manifest = json.loads(path.read_text())
    if manifest.get("format_version") != FORMAT_VERSION or manifest.get("kind") != "classifier":
        raise BundleError(f"{path}: unsupported bundle (format {manifest.get('format_version')}, kind {manifest.get('kind')})")
    return manifest


def load_bundle(folder: str | Path, verify_sha256: bool = True,
                input_size: tuple[int, int] | None = None) -> tuple[keras.Model, Taxonomy, dict]:
    """`input_size` runs the same weights at another input size (the trunks pool globally): for
    measuring the accuracy/speed trade of a size without retraining; the bundle's size is the default."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    weights = folder / manifest["weights"]["file"]
    if verify_sha256 and sha256_file(weights) != manifest["weights"]["sha256"]:
        raise BundleError(f"{weights}: sha256 does not match the manifest (corrupt or replaced file)")
    taxonomy = Taxonomy.from_dict(manifest["taxonomy"])
    config = manifest["model"]
    # Bundles written before trunks had names are VGG19.
    model = build_model(taxonomy, input_size=tuple(input_size or config["input_size"]), width=config.get("width", 1.0),
                        head_units=config["head_units"], trunk=config.get("trunk", "vgg19"))
    load_weights(model, weights, taxonomy)
    return model, taxonomy, manifest


def mirror_policy(value: bool | float) -> bool | float:
    """How the mirror view is used: False (one view), True (every image's outputs averaged with its mirror
    image's) or a confidence in (0, 1): only images whose top articleType probability is under it get
    the second view (what is sure of itself rarely changes with it; a fraction of the cost)."""
    if isinstance(value, bool):
        return value
    value = float(value)
    if not 0 <= value <= 1:
        raise ValueError(f"mirror view threshold {value}: give a confidence between 0 and 1 (or true/false)")
    return value if 0 < value < 1 else value == 1


def flip_average_of(manifest: Mapping) -> bool | float:
    """How a bundle is served with its mirror view (see mirror_policy), as its manifest says."""
    return mirror_policy(manifest.get("inference", {}).get("flip_average", False))


def served_version(manifest: Mapping, flip_average: bool | float | None = None) -> str:
    """name:version of a bundle's weights, "+flip" when served with the mirror view ("+flip<T" when only
    under confidence T; None: as the manifest says): outputs differ between them, so what they produce
    names which one made it."""
    flip_average = flip_average_of(manifest) if flip_average is None else mirror_policy(flip_average)
    return f"{manifest['name']}:{manifest['version']}{mirror_suffix(flip_average)}"


def vote_suffix(vote_version: str | None) -> str:
    """What a version gains from a neighbour vote (classification.neighbour_vote): "+vote-<version>", or nothing."""
    return f"+vote-{vote_version}" if vote_version else ""


def slips_suffix(taxonomy: Taxonomy) -> str:
    """What a tag version gains when slip paths are shown as their articleType's commonest path
    (Taxonomy.slips): "+paths-<digest of that map>", or nothing. Tags only: embeddings never read the path."""
    if not taxonomy.slips:
        return ""
    shown = sorted((list(taxonomy.paths[slip]), list(taxonomy.paths[commonest]))
                   for slip, commonest in taxonomy.slips.items())
    return "+paths-" + hashlib.sha256(json.dumps(shown).encode()).hexdigest()[:8]


def garment_input_size_of(manifest: Mapping, override: Sequence[int] | None = None) -> tuple[int, int]:
    """The (height, width) garment crops are read at: `override`, else the manifest's
    inference.garment_input_size, else the bundle's input size."""
    return tuple(override or (manifest.get("inference") or {}).get("garment_input_size") or manifest["model"]["input_size"])


def garments_suffix(garment_input_size: Sequence[int], input_size: Sequence[int]) -> str:
    """What a version gains when garments are read at another size than whole images: "+garments-HxW", or nothing."""
    return "" if tuple(garment_input_size) == tuple(input_size) else "+garments-{}x{}".format(*garment_input_size)


def heads_suffix(heads_version: str | None) -> str:
    """What a version gains from feature heads (classification.feature_heads): "+heads-<version>", or nothing."""
    return f"+heads-{heads_version}" if heads_version else ""


def mirror_suffix(flip_average: bool | float) -> str:
    """What a version gains from the mirror view: "+flip", "+flip<T" under confidence T, or nothing."""
    flip_average = mirror_policy(flip_average)
    return "+flip" if flip_average is True else (f"+flip<{flip_average:g}" if flip_average else "")
