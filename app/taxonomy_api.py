"""GET /v1/taxonomy: every tag the serving classifier can give, and which combinations exist.

A storefront maps these labels onto its own categories, builds the filters of its `/v1/items` queries
and the forms people correct tags with (`PUT /v1/items/<id>/labels` takes exactly these), without
reading a bundle. The category is decoded jointly, so only the listed (masterCategory, subCategory,
articleType) paths are ever tagged (a labelling slip of the catalogue, such as Apparel / Topwear / Dresses,
says which path is shown instead: `shown_as`); each says how many of the classifier's training images it labels
(the catalogue's commonest path for an articleType under two parents is the one a label implies). With
the detector prior on, a detected garment's class allows only some articleTypes (`garment_classes`).
"""
from __future__ import annotations

from flask import Blueprint, current_app

from classification.taxonomy import HIERARCHY_LEVELS, MODEL_GROUPS

from .labels import training_path_counts

bp = Blueprint("taxonomy", __name__, url_prefix="/v1")


def taxonomy_json(pipeline) -> dict:
    classifier = pipeline.classifier
    taxonomy = classifier.taxonomy
    counts = training_path_counts(classifier)
    prior = pipeline.prior
    return {
        "classifier": classifier.versions,
        "tasks": {group: {task: list(taxonomy.labels[task]) for task in tasks} for group, tasks in MODEL_GROUPS.items()},
        # a slip path (Taxonomy.slips) is never shown: an image decoded to it is tagged with `shown_as`
        "paths": [dict(zip(HIERARCHY_LEVELS, path), training_images=counts.get(tuple(path), 0))
                  | ({"shown_as": dict(zip(HIERARCHY_LEVELS, taxonomy.paths[taxonomy.slips[index]]))}
                     if index in taxonomy.slips else {})
                  for index, path in enumerate(taxonomy.paths)],
        # detector class -> the articleTypes its garments can be tagged (null: any); null when the prior is off
        "garment_classes": None if prior.mode == "off" else {
            detector_class: None if paths is None else sorted({path[2] for path in paths})
            for detector_class, paths in sorted(prior.allowed.items())},
    }


@bp.get("/taxonomy")
def read_taxonomy():
    return taxonomy_json(current_app.extensions["pipeline"].load())
