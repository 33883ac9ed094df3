"""A detector bundle: `manifest.json` + `weights.pt` (a float16 state dict by default)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from common.bundles import BundleError, sha256_file

from .model import DetectorConfig, build_detector

FORMAT_VERSION = 1
WEIGHTS = "weights.pt"
CLASS_HEAD = "roi_heads.box_predictor.cls_score.weight"


def write_bundle(folder: Path, model: torch.nn.Module, config: DetectorConfig, classes: list[str], extra: dict,
                 dtype: torch.dtype = torch.float16) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    torch.save(state, folder / WEIGHTS)
    sha = sha256_file(folder / WEIGHTS)
    manifest = {"format_version": FORMAT_VERSION, "kind": "detector", "name": folder.name, "version": sha[:12],
                "model": dataclasses.asdict(config), "classes": list(classes),
                "input": {"channels": "RGB", "dtype": "uint8 HxWx3, scaled to [0, 1]; the model resizes and normalises",
                          "min_size": config.min_size, "max_size": config.max_size},
                "weights": {"file": WEIGHTS, "dtype": str(dtype).replace("torch.", ""), "sha256": sha}, **extra}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def load_bundle(folder: str | Path, overrides: dict | None = None) -> tuple[torch.nn.Module, dict]:
    folder = Path(folder)
    path = folder / "manifest.json"
    if not path.is_file():
        raise BundleError(f"{folder}: no manifest.json; not a detector bundle")
    manifest = json.loads(path.read_text())
    if manifest.get("format_version") != FORMAT_VERSION or manifest.get("kind") != "detector":
        raise BundleError(f"{path}: unsupported bundle (format {manifest.get('format_version')}, kind {manifest.get('kind')})")
    weights = folder / manifest["weights"]["file"]
    if sha256_file(weights) != manifest["weights"]["sha256"]:
        raise BundleError(f"{weights}: sha256 does not match the manifest (corrupt or replaced file)")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    outputs = state[CLASS_HEAD].shape[0]
    if outputs != len(manifest["classes"]) + 1:
        raise BundleError(f"detector head has {outputs} outputs (background included) but the manifest lists "
                          f"{len(manifest['classes'])} classes; refusing a bundle whose labels do not match its model")
    overrides = dict(overrides or {})
    if "min_size" in overrides and "max_size" not in overrides:  # keep the bundle's aspect limit
        saved = manifest["model"]
        overrides["max_size"] = round(overrides["min_size"] * saved["max_size"] / saved["min_size"])
    config = DetectorConfig(**{**manifest["model"], **overrides})
    model = build_detector(config)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model.eval(), manifest
