"""GET /v1/models: which model bundles tag the images, how they serve, and how well they scored.

A storefront deciding which tags to trust on which kind of image, or an operator checking what a
deployment runs, reads it here instead of in the bundles' manifests: the versions each stored analysis
records (`bundles` of an analysis), the serving options that change the tags, and each bundle's
held-out figures with their 95% intervals as its manifest records them. The classifier's figures were
measured with one way of serving (mirror view, neighbour vote); `as_served` says whether that is how it
serves now (settings such as CLASSIFIER_FLIP_AVERAGE=0 change it).
"""
from __future__ import annotations

from flask import Blueprint, current_app

from .pipeline import Pipeline

bp = Blueprint("models", __name__, url_prefix="/v1")

# The detector manifest's headline figures (its metrics also hold per-category tables and timings).
DETECTOR_FIGURES = ("split", "images", "instances", "box_AP", "box_AP50", "mask_AP", "mask_AP50",
                    "agnostic_box_AP", "agnostic_box_AP50")


def classifier_json(pipeline: Pipeline) -> dict:
    classifier = pipeline.classifier
    manifest = classifier.manifest
    vote = classifier.neighbour_vote.version if classifier.neighbour_vote else None
    metrics = {name: value for name, value in (manifest.get("metrics") or {}).items() if name != "report"}
    measured_as = manifest.get("inference") or {}
    return {
        "name": manifest["name"], "version": manifest["version"], "served_as": classifier.versions,
        "trunk": manifest["model"].get("trunk"), "input_size": list(classifier.input_size),
        "mirror_view": classifier.flip_average, "neighbour_vote": vote,
        "held_out": {**metrics, "measured_as": measured_as,
                     "as_served": measured_as.get("flip_average") == classifier.flip_average
                     and measured_as.get("neighbour_vote") == vote},
        "embedding": {"version": pipeline.embedding_model, "dim": classifier.embedding_dim},
    }


def detector_json(pipeline: Pipeline) -> dict:
    detector = pipeline.detector
    manifest = detector.manifest
    metrics = manifest.get("metrics") or {}
    return {
        "name": manifest["name"], "version": detector.version,
        "architecture": manifest["model"].get("architecture"), "classes": list(detector.classes),
        "class_agnostic_nms": detector.class_agnostic_nms,
        "held_out": {name: metrics[name] for name in DETECTOR_FIGURES if name in metrics},
    }


@bp.get("/models")
def read_models():
    pipeline = current_app.extensions["pipeline"].load()
    return {"bundles": pipeline.bundles, "classifier": classifier_json(pipeline), "detector": detector_json(pipeline),
            "detector_prior": pipeline.prior.name if pipeline.prior.mode != "off" else None,
            "garment_crop": pipeline.garment_crop}
