"""GET /v1/models: which model bundles tag the images, how they serve, and how well they scored.

A storefront deciding which tags to trust on which kind of image, or an operator checking what a
deployment runs, reads it here instead of in the bundles' manifests: the versions each stored analysis
records (`bundles` of an analysis), the serving options that change the tags, and each bundle's
held-out figures with their 95% intervals as its manifest records them. The classifier's figures were
measured with one way of serving (mirror view, neighbour vote); `as_served` says whether that is how it
serves now (settings such as CLASSIFIER_FLIP_AVERAGE=0 change it). `?per_label=true` adds each label's
figures from the same evaluation (the precision of every tag the classifier gives: how often a catalogue
thumbnail tagged Flats is Flats), so a caller can distrust the few tags it rarely gets right. The held-out
figures also say how far each tag's confidence can be trusted (`confidence`: per kind and task, how often a
tag at least that sure is right, and how many images get one): the `min_confidence` to filter at.
"""
from __future__ import annotations

import json
import weakref
from pathlib import Path

from flask import Blueprint, current_app, request

from classification.bundle import garment_input_size_of

from .api import parse_flag
from .pipeline import Pipeline

bp = Blueprint("models", __name__, url_prefix="/v1")

# The detector manifest's headline figures (its metrics also hold per-category tables and timings).
DETECTOR_FIGURES = ("split", "images", "instances", "box_AP", "box_AP50", "mask_AP", "mask_AP50",
                    "agnostic_box_AP", "agnostic_box_AP50")


# Per catalogue class: how often the tag is right when given (precision; null when no held-out thumbnail
# got it), how often the class is found (recall), on how many thumbnails of the class (support) and how
# many got the tag (predicted; absent from evaluations older than it).
CLASS_FIGURES = ("precision", "recall", "support", "predicted")
# Per source label of a photo kind: the figures of the kind's headline, over that label's images.
SOURCE_LABEL_FIGURES = ("support", "group_accuracy", "masterCategory_accuracy")


def evaluation_matches(reports: dict, metrics: dict) -> bool:
    """Whether an evaluation's reports are the one the manifest's figures (4 decimals) were read from."""
    for kind, figures in metrics.items():
        report = reports.get(kind)
        if kind == "intervals_95" or not isinstance(figures, dict) or "images" not in figures:
            continue
        if report is None or report.get("images") != figures["images"]:
            return False
        measured = ({task: m.get("accuracy") for task, m in report["tasks"].items()} if kind == "catalogue"
                    else {name: report.get(name) for name in figures})
        if any(name in measured and measured[name] is not None and round(measured[name], 4) != value
               for name, value in figures.items() if name not in ("images", "labels")):
            return False
    return True


def class_figures(figures: dict) -> dict:
    out = {name: round(figures[name], 4) for name in CLASS_FIGURES if name in figures}
    if out.get("predicted") == 0:
        out["precision"] = None  # never given: 0 by convention in the evaluation, but nothing was wrong
    return out


def per_label_figures(bundle_dir: Path, manifest: dict) -> dict | None:
    """Each label's held-out figures from the bundle's evaluation (metrics.json beside the manifest's
    report): per catalogue task and class CLASS_FIGURES, per photo kind and source label
    SOURCE_LABEL_FIGURES. None when the bundle has no evaluation, or not the one its manifest's figures
    came from (a later evaluation written elsewhere, a stale file)."""
    metrics = manifest.get("metrics") or {}
    path = bundle_dir / Path(metrics.get("report") or "evaluation/report.md").parent / "metrics.json"
    if not path.is_file():
        return None
    reports = json.loads(path.read_text())
    if not evaluation_matches(reports, metrics):
        return None
    out = {}
    for kind, report in reports.items():
        if kind == "catalogue":
            out[kind] = {task: {label: class_figures(c)
                                for label, c in sorted(m.get("per_class", {}).items(), key=lambda kv: -kv[1]["support"])}
                         for task, m in report["tasks"].items()}
        else:
            out[kind] = {label: {name: round(m[name], 4) for name in SOURCE_LABEL_FIGURES}
                         for label, m in sorted(report.get("per_label", {}).items(), key=lambda kv: -kv[1]["support"])}
    return out


# A loaded classifier's per-label figures, read once: its manifest (and so its evaluation) is fixed once
# loaded, and the detail page asks for them on every view.
_PER_LABEL: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def loaded_per_label_figures(classifier) -> dict | None:
    if classifier not in _PER_LABEL:
        _PER_LABEL[classifier] = per_label_figures(classifier.bundle_dir, classifier.manifest)
    return _PER_LABEL[classifier]


def vote_version(classifier) -> str | None:
    return classifier.neighbour_vote.version if classifier.neighbour_vote else None


def heads_version(classifier) -> str | None:
    return classifier.feature_heads.version if classifier.feature_heads else None


def specialist_version(classifier) -> str | None:
    return classifier.specialist_settings.version if classifier.specialist else None


def specialist_card(classifier) -> dict | None:
    """The second network for catalogue thumbnails (classification.thumbnail_specialist): its version, how far
    it is mixed in, and the least catalogue probability of the kind gate it reads an image at; None without."""
    settings = classifier.specialist_settings if classifier.specialist else None
    return ({"version": settings.version, "weight": settings.weight, "min_gate": settings.min_gate,
             "weights": classifier.specialist.manifest["version"]} if settings else None)


def heads_tasks(classifier) -> dict[str, dict] | None:
    """Each task the feature heads mix into: the regression's weight, and whether it is gated (mixed in only
    as far as the image looks like a catalogue thumbnail: classification.feature_heads)."""
    heads = classifier.feature_heads
    return {head.task: {"weight": head.weight, "gated": head.gated} for head in heads.heads} if heads else None


def source_label_heads(classifier) -> dict[str, dict] | None:
    """Each kind of image whose own labels (a phone photo's "Pants") are read by a regression mixed into
    articleType as far as the image looks like that kind: its weight and how many labels it reads."""
    heads = classifier.feature_heads
    return ({head.kind: {"weight": head.weight, "labels": len(head.labels)} for head in heads.label_heads}
            if heads else None)


def measured_as_served(classifier) -> bool:
    """Whether the classifier's held-out figures were measured the way it serves now (mirror view, vote,
    feature heads, thumbnail specialist, the size street crops were read at)."""
    measured_as = classifier.manifest.get("inference") or {}
    return (measured_as.get("flip_average") == classifier.flip_average
            and measured_as.get("neighbour_vote") == vote_version(classifier)
            and measured_as.get("feature_heads") == heads_version(classifier)
            and measured_as.get("thumbnail_specialist") == specialist_version(classifier)
            and garment_input_size_of(classifier.manifest) == tuple(classifier.garment_input_size))


def tag_precision(pipeline: Pipeline) -> dict[str, dict[str, float | None]]:
    """task -> label -> how often the serving classifier's tag was right on held-out catalogue thumbnails
    ({} when its evaluation is missing, stale, or measured another way than it serves now)."""
    classifier = pipeline.classifier
    figures = loaded_per_label_figures(classifier) if measured_as_served(classifier) else None
    return {task: {label: c["precision"] for label, c in classes.items()}
            for task, classes in ((figures or {}).get("catalogue") or {}).items()}


def classifier_json(pipeline: Pipeline, per_label: bool = False) -> dict:
    classifier = pipeline.classifier
    manifest = classifier.manifest
    metrics = {name: value for name, value in (manifest.get("metrics") or {}).items() if name != "report"}
    held_out = {**metrics, "measured_as": manifest.get("inference") or {}, "as_served": measured_as_served(classifier)}
    if per_label:
        held_out["per_label"] = loaded_per_label_figures(classifier)
    return {
        "name": manifest["name"], "version": manifest["version"], "served_as": classifier.versions,
        "trunk": manifest["model"].get("trunk"), "input_size": list(classifier.input_size),
        # garment crops are read at this size (more detail than a whole image's letterbox)
        "garment_input_size": list(classifier.garment_input_size),
        "mirror_view": classifier.flip_average, "neighbour_vote": vote_version(classifier),
        "feature_heads": heads_version(classifier), "feature_head_tasks": heads_tasks(classifier),
        "source_label_heads": source_label_heads(classifier),
        "thumbnail_specialist": specialist_card(classifier),
        "held_out": held_out,
        "embedding": embedding_card(pipeline),
    }


def embedding_card(pipeline: Pipeline) -> dict:
    """The embedding space "more like this" searches: its name and size, and its class profile (each task's
    weight, and whether it reads the model's own probabilities or the served ones; none without a head)."""
    classifier = pipeline.classifier
    head = classifier.embedding_head
    return {"version": pipeline.embedding_model, "dim": classifier.embedding_dim,
            "profile": {task: weight for task, weight, _ in head.profile} if head is not None else {},
            "profile_probabilities": head.profile_source if head is not None and head.profile else None}


def detector_json(pipeline: Pipeline) -> dict:
    detector = pipeline.detector
    manifest = detector.manifest
    metrics = manifest.get("metrics") or {}
    return {
        "name": manifest["name"], "version": detector.version,
        "architecture": manifest["model"].get("architecture"), "classes": list(detector.classes),
        "class_agnostic_nms": detector.class_agnostic_nms,
        "compute_dtype": detector.compute_dtype,  # what "auto" became on this machine
        "held_out": {name: metrics[name] for name in DETECTOR_FIGURES if name in metrics},
    }


@bp.get("/models")
def read_models():
    per_label = parse_flag(request.args.get("per_label"), "per_label")
    pipeline = current_app.extensions["pipeline"].load()
    return {"bundles": pipeline.bundles, "classifier": classifier_json(pipeline, per_label), "detector": detector_json(pipeline),
            "detector_prior": pipeline.prior.name if pipeline.prior.mode != "off" else None,
            "garment_crop": pipeline.garment_crop,
            "garment_context": pipeline.context.name if pipeline.context.pooling != "off" else None,
            "garment_fragments": pipeline.fragments.name if pipeline.fragments.containment is not None else None,
            "product_garment": pipeline.product_garment.name if pipeline.product_garment.pooling != "off" else None,
            # this worker's count of labelled items in its neighbour vote (null: labels do not vote)
            "labelled_vote_rows": label_votes.rows if (label_votes := current_app.extensions.get("label_votes")) else None}
