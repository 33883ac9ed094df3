"""Train a classifier bundle's retrieval embedding head (classification.embedding_head) and score it.

    python -m classification.train_embedding_head --bundle models/fashion-lite0 \\
        --catalogue ../shared/datasets/fashion-product-images-small \\
        --photos ../shared/datasets/clothing-dataset --street ../shared/datasets/clothing-co-parsing \\
        --run-dir runs/embedding-head [--image-cache runs/lite0-160] [--write]

The bundle's own split decides what the head may learn from: its training images only (catalogue
train split, the training senders' phone photos, the training photos' street crops). Pooled features
and the classifier's probabilities are computed once by the bundle (cached in --run-dir, keyed by the
bundle version). The projection is trained on the training part; then the weights of its class
profile (--profile-tasks: those tasks' predicted distributions join the embedding) are chosen on the
catalogue validation split, the training senders' phone photos, and those photos searched in the
catalogue validation split (--cross-weight). Precision@10 is measured with the pooled features, the
projection alone and the whole embedding on the catalogue validation split (articleType and
baseColour; it chose the weights), and on what nothing was chosen on: the catalogue test split, the
validation senders' photos and the held-out photos' street crops (their coarse label), and those
photos and crops searched in the catalogue test split. `--write` stores the head in the bundle and the
figures and this command in its manifest.

The profile reads the model's own probabilities, or with `--profile-probabilities served` the served
ones (the bundle's neighbour vote and feature heads). Those depend on the vote, which is built on the
projection, so a served profile is chosen on a kept projection: train the head, build the vote
(classification.build_neighbour_vote) and fit the feature heads, then

    python -m classification.train_embedding_head ...the same data options... --run-dir runs/knn \
        --keep-projection --profile-probabilities served --profile-tasks articleType --write
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

from . import runtime  # noqa: F401  (import order and backend first)

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from common.bundles import BundleError  # noqa: E402

from .bundle import mirror_suffix, read_manifest  # noqa: E402
from .catalogue import read_catalogue  # noqa: E402
from .data import encode_allowed, image_cache_path, load_images  # noqa: E402
from .embedding_head import (MISSING, PROFILE_GRID, PROFILE_SOURCES, CrossSearch, EmbeddingHead, Gallery, cross_precision_at_k,  # noqa: E402
                             l2_normalise, load_head, precision_at_k, train_head, tune_profile)
from .inference import Classifier  # noqa: E402
from .label_map import LabelMap  # noqa: E402
from .neighbour_vote import VOTE_FILE, load_vote  # noqa: E402
from .photo_datasets import read_labelled_photos, read_street_crops  # noqa: E402
from .records import LabelledImage, from_catalogue  # noqa: E402
from .taxonomy import TASKS, Taxonomy  # noqa: E402

LABEL_MAPS = Path(__file__).resolve().parent / "label_maps"
K = 10


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(parser)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--scale", type=float, default=16.0, help="softmax scale of the cosines")
    parser.add_argument("--colour-weight", type=float, default=0.5,
                        help="weight of catalogue baseColour against articleType, in the loss and the profile's tuning")
    parser.add_argument("--catalogue-label-sets", default="articleType,baseColour",
                        help="comma-separated catalogue tasks whose labels the projection learns (each a label set; "
                             "articleType and baseColour always)")
    parser.add_argument("--label-set-weight", action="append", default=[], metavar="TASK=WEIGHT",
                        help="loss weight of another catalogue label set (default 1.0; baseColour's is --colour-weight)")
    parser.add_argument("--photo-weight", type=float, default=1.0,
                        help="weight of the training senders' phone photos (same label) in the profile's tuning")
    parser.add_argument("--cross-weight", type=float, default=1.0,
                        help="weight of the training senders' phone photos searched in the catalogue validation split "
                             "(a found thumbnail counts when the photo's label allows its articleType) in the profile's tuning")
    parser.add_argument("--profile-tasks", default="articleType,baseColour",
                        help="comma-separated tasks whose probabilities may join the embedding ('' for none)")
    parser.add_argument("--profile-probabilities", choices=PROFILE_SOURCES, default="model",
                        help="what the class profile reads: the model's own probabilities, or the served ones (the "
                             "bundle's neighbour vote and feature heads: needs --keep-projection, the vote being built "
                             "on the projection)")
    parser.add_argument("--keep-projection", action="store_true",
                        help="keep the bundle's projection (and the neighbour vote built on it): choose the class "
                             "profile only")
    parser.add_argument("--batch-size", type=int, default=128, help="images per forward pass of the bundle")
    parser.add_argument("--write", action="store_true", help="store the head and its figures in the bundle")
    return parser.parse_args(argv)


def add_data_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """The bundle, the three kinds of image and the feature cache: what every CLI over a bundle's
    pooled features takes (this one and classification.build_neighbour_vote); `required=False` where
    the caller sets defaults."""
    parser.add_argument("--bundle", type=Path, required=required)
    parser.add_argument("--catalogue", type=Path, required=required, help="catalogue folder (styles.csv + images/)")
    parser.add_argument("--photos", type=Path, help="labelled phone photos (images.csv + images/)")
    parser.add_argument("--photo-label-map", type=Path, default=LABEL_MAPS / "clothing-dataset.json")
    parser.add_argument("--street", type=Path, help="Clothing Co-Parsing folder (garment crops)")
    parser.add_argument("--street-label-map", type=Path, default=LABEL_MAPS / "clothing-co-parsing.json")
    parser.add_argument("--run-dir", type=Path, required=required, help="feature cache")
    parser.add_argument("--image-cache", type=Path, help="a training run's folder whose decoded images to reuse")
    parser.add_argument("--max-side", type=int, default=192, help="photos and crops are shrunk to this, as in training")


def read_records(args, taxonomy: Taxonomy, split: dict) -> tuple[dict, dict]:
    """(kind, part) -> records, by the bundle's split; and kind -> every record of that kind."""
    def pick(records, ids):
        by_id = {r.id: r for r in records}
        return [by_id[i] for i in ids if i in by_id]

    by_kind = {"catalogue": from_catalogue(read_catalogue(args.catalogue).records)}
    parts = {("catalogue", part): pick(by_kind["catalogue"], split[part]) for part in ("train", "val", "test")}
    if args.photos:
        by_kind["photo"] = read_labelled_photos(args.photos, LabelMap.load(args.photo_label_map), taxonomy)
    if args.street:
        by_kind["street"] = read_street_crops(args.street, LabelMap.load(args.street_label_map), taxonomy)
    for kind in ("photo", "street"):
        if kind in by_kind:
            parts |= {(kind, part): pick(by_kind[kind], split[kind][part]) for part in ("train", "val")}
    return parts, by_kind


def features_path(args, classifier: Classifier, kind: str, part: str, count: int) -> Path:
    # The weights and the view they were run with (features with the mirror view are other features).
    view = mirror_suffix(classifier.flip_average).replace("<", "-below-")
    return args.run_dir / f"features-{classifier.manifest['version']}{view}-{kind}-{part}-{count}.npz"


def cached_images(args, kind: str, all_of_kind: list[LabelledImage]) -> dict | None:
    """id -> decoded image from a training run's cache of this kind (read once per kind), or None."""
    if args.image_cache is None:
        return None
    path = image_cache_path(args.image_cache, kind, args.max_side, len(all_of_kind))
    if not path.is_file():
        return None
    max_side = None if kind == "catalogue" else args.max_side
    return dict(zip((r.id for r in all_of_kind), load_images(all_of_kind, max_side, cache=path)))


def embedding_inputs(classifier: Classifier, args, kind: str, part: str, records: list[LabelledImage],
                     decoded: dict | None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The bundle's pooled trunk features and probabilities of `records`, cached by bundle version;
    images come from `decoded` (id -> image) when given, else from their files."""
    cache = features_path(args, classifier, kind, part, len(records))
    if cache.is_file():
        with np.load(cache) as arrays:
            return arrays["features"], {task: arrays[task] for task in TASKS}
    max_side = None if kind == "catalogue" else args.max_side
    features, probs = [], {task: [] for task in TASKS}
    step = 1024
    for start in tqdm(range(0, len(records), step), desc=f"features {kind}/{part}", unit="chunk"):
        batch = records[start:start + step]
        images = [decoded[r.id] for r in batch] if decoded is not None else load_images(batch, max_side, desc="decoding")
        batch_features, batch_probs = classifier.embedding_inputs(images)
        features.append(batch_features)
        for task in TASKS:
            probs[task].append(batch_probs[task])
    if not features:
        features, probs = classifier.embedding_inputs([])
    else:
        features, probs = np.concatenate(features), {task: np.concatenate(chunks) for task, chunks in probs.items()}
    np.savez(cache, features=features, **probs)
    return features, probs


def bundle_features(args) -> tuple[dict, Classifier, dict, dict, dict]:
    """The bundle's manifest, its classifier (the model's own outputs: no neighbour vote), the records of
    each (kind, part) by its split, and their pooled features and probabilities, from the cache where it
    has them (images decoded once per kind otherwise)."""
    args.run_dir.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(args.bundle)
    split = json.loads((args.bundle / "split.json").read_text())
    records, by_kind = read_records(args, Taxonomy.from_dict(manifest["taxonomy"]), split)
    classifier = Classifier(args.bundle, neighbour_vote=False, feature_heads=False)
    features, probs = {}, {}
    for kind in by_kind:
        keys = [key for key in records if key[0] == kind]
        done = all(features_path(args, classifier, *key, len(records[key])).is_file() for key in keys)
        decoded = None if done else cached_images(args, kind, by_kind[kind])
        for key in keys:
            features[key], probs[key] = embedding_inputs(classifier, args, *key, records[key], decoded)
    return manifest, classifier, records, features, probs


PROFILE_WHAT = {"model": "the model's own",
                "served": "the served ones: the bundle's neighbour vote and feature heads; the training images "
                          "were tuned on without the vote, which would find each of them itself"}


def kept_projection(args) -> EmbeddingHead:
    """The bundle's projection without its class profile, refused when the bundle's neighbour vote was not
    built on it as a projection (a vote from before: rebuild it, classification.build_neighbour_vote)."""
    head = load_head(args.bundle)
    if head is None:
        raise SystemExit(f"--keep-projection: {args.bundle} has no embedding head to keep")
    projection = head.with_profile({}, {})  # its version is the projection's: the vote must name exactly that
    try:
        load_vote(args.bundle, projection)
    except BundleError as error:
        raise SystemExit(f"--keep-projection: {error}") from None
    return projection


def profile_inputs(args, records: dict, features: dict, probs: dict) -> dict:
    """(kind, part) -> the probabilities the class profile reads (--profile-probabilities): the model's
    own, or the served ones. The served ones of a training image leave the vote out: the image is one of
    its rows and would find itself."""
    if args.profile_probabilities == "model":
        return probs
    served = Classifier(args.bundle)  # its vote (built on the kept projection) and feature heads
    out = {}
    for key in records:
        if key[1] == "train":
            out[key] = served.feature_heads.mix(probs[key], features[key]) if served.feature_heads else probs[key]
        else:
            out[key] = served.voted(features[key], probs[key])
    return out


def catalogue_label_sets(text: str) -> list[str]:
    """The catalogue tasks the projection learns: articleType and baseColour (the retrieval figures
    and the profile's tuning stand on them), then any others asked for, each once."""
    asked = [task.strip() for task in text.split(",") if task.strip()]
    unknown = sorted(set(asked) - set(TASKS))
    if unknown:
        raise SystemExit(f"--catalogue-label-sets: unknown tasks {unknown}; known: {list(TASKS)}")
    return list(dict.fromkeys(["articleType", "baseColour", *asked]))


def loss_weights(args) -> dict[str, float]:
    """Each catalogue label set's loss weight other than 1: baseColour's, then --label-set-weight's."""
    weights = {"baseColour": args.colour_weight}
    for item in args.label_set_weight:
        task, _, value = item.partition("=")
        try:
            weights[task.strip()] = float(value)
        except ValueError:
            raise SystemExit(f"--label-set-weight takes TASK=WEIGHT, got {item!r}") from None
    return weights


def label_indices(records: list[LabelledImage], kind: str, label_of, vocabulary: list[str]) -> np.ndarray:
    """Each record's index of its label in `vocabulary`; MISSING for other kinds and unknown labels."""
    position = {label: i for i, label in enumerate(vocabulary)}
    return np.array([position.get(label_of(r), MISSING) if r.kind == kind else MISSING for r in records], dtype=np.int64)


def allowed_classes(records: list[LabelledImage], taxonomy: Taxonomy) -> np.ndarray:
    """(N, articleTypes) bool: the articleTypes each record's label allows."""
    return encode_allowed(records, taxonomy)["articleType"].astype(bool)


def catalogue_classes(records: list[LabelledImage], taxonomy: Taxonomy) -> np.ndarray:
    """Each catalogue record's articleType index (-1: none the taxonomy knows)."""
    allowed = allowed_classes(records, taxonomy)
    return np.where(allowed.any(axis=1), allowed.argmax(axis=1), -1)


def retrieval_scores(vectors: dict, records: dict, taxonomy: Taxonomy) -> dict:
    """Precision@10 on each held-out gallery, each image against the rest of its gallery; and the
    validation photos and crops searched in the catalogue test split (search by photo)."""
    scores = {}
    for part in ("val", "test"):
        gallery = records[("catalogue", part)]
        scores[f"catalogue_{part}"] = {"gallery": len(gallery)} | {
            f"precision@10_{task}": round(precision_at_k(vectors[("catalogue", part)], [r.label(task) for r in gallery],
                                                         k=K).precision, 4)
            for task in ("articleType", "baseColour", "gender")}
    for kind in ("photo", "street"):
        if (kind, "val") in vectors:
            gallery = records[(kind, "val")]
            scores[f"{kind}_val"] = {"gallery": len(gallery), "precision@10_label": round(
                precision_at_k(vectors[(kind, "val")], [r.source_label for r in gallery], k=K).precision, 4)}
            catalogue = records[("catalogue", "test")]
            scores[f"{kind}_val"]["precision@10_in_catalogue_test"] = round(cross_precision_at_k(
                vectors[(kind, "val")], vectors[("catalogue", "test")], allowed_classes(gallery, taxonomy),
                catalogue_classes(catalogue, taxonomy), k=K), 4)
    return scores


def profile_objective(args, records: dict, features: dict, profile_probs: dict,
                      taxonomy: Taxonomy) -> tuple[dict, dict, dict]:
    """What the class profile's weights are chosen by: the objective ((gallery or cross search, label set)
    -> weight), its galleries and its cross searches. The catalogue validation split and, where there are
    phone photos, the training senders' photos too (same coarse label: the profile must not trade away
    same-type neighbours on photos, which carry no colour label, for colour on the catalogue), and those
    photos searched in the catalogue validation split (search by photo: a found thumbnail counts when the
    photo's label allows its articleType)."""
    objective = {("catalogue_val", "articleType"): 1.0, ("catalogue_val", "baseColour"): args.colour_weight}
    val, photos = ("catalogue", "val"), ("photo", "train")
    galleries = {"catalogue_val": Gallery(features[val], profile_probs[val], {
        task: [r.label(task) for r in records[val]] for task in ("articleType", "baseColour")})}
    crosses = {}
    if photos in records:
        photo_gallery = Gallery(features[photos], profile_probs[photos], {"label": [r.source_label for r in records[photos]]})
        if args.photo_weight > 0:
            objective[("photo_train", "label")] = args.photo_weight
            galleries["photo_train"] = photo_gallery
        if args.cross_weight > 0:
            objective[("photo_train_in_catalogue_val", "allowed")] = args.cross_weight
            crosses["photo_train_in_catalogue_val"] = CrossSearch(
                photo_gallery, "catalogue_val", allowed_classes(records[photos], taxonomy),
                catalogue_classes(records[val], taxonomy))
    return objective, galleries, crosses


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.time()
    # The model's own probabilities; a neighbour vote in the bundle was built on the head this replaces.
    manifest, classifier, records, features, probs = bundle_features(args)
    taxonomy = classifier.taxonomy

    # Training rows: every kind's training part; each label set is one kind's labels.
    train_keys = [key for key in records if key[1] == "train"]
    train_features = np.concatenate([features[key] for key in train_keys])
    train_records = [r for key in train_keys for r in records[key]]
    catalogue_sets, weights = catalogue_label_sets(args.catalogue_label_sets), loss_weights(args)
    labels = {
        task: label_indices(train_records, "catalogue", lambda r, t=task: r.label(t), taxonomy.labels[task])
        for task in catalogue_sets}
    for kind in ("photo", "street"):
        vocabulary = sorted({r.source_label for r in train_records if r.kind == kind})
        if vocabulary:
            labels[f"{kind}_label"] = label_indices(train_records, kind, lambda r: r.source_label, vocabulary)
    if args.keep_projection:
        projection, history = kept_projection(args), {}
    elif args.profile_probabilities == "served":
        raise SystemExit("--profile-probabilities served reads the neighbour vote built on the projection: train the "
                         "projection (--profile-probabilities model), rebuild the vote (classification."
                         "build_neighbour_vote) and the feature heads, then rerun with --keep-projection")
    else:
        projection, history = train_head(train_features, labels, dim=args.dim, epochs=args.epochs,
                                         learning_rate=args.lr, scale=args.scale, loss_weights=weights, verbose=2)
    profile_probs = profile_inputs(args, records, features, probs)

    objective, galleries, crosses = profile_objective(args, records, features, profile_probs, taxonomy)
    profile_tasks = [task for task in args.profile_tasks.split(",") if task]
    head, candidates = projection.with_profile({}, {}, args.profile_probabilities), []
    if profile_tasks:
        head, candidates = tune_profile(head, galleries, objective, profile_tasks, k=K, crosses=crosses)

    held_out = [key for key in records if key[1] != "train"]
    before = retrieval_scores({key: l2_normalise(features[key]) for key in held_out}, records, taxonomy)
    projected = retrieval_scores({key: projection.project(features[key]) for key in held_out}, records, taxonomy)
    after = retrieval_scores({key: head.project(features[key], profile_probs[key]) for key in held_out}, records, taxonomy)
    profile = {task: weight for task, weight, _ in head.profile}
    report = {"head": head.version, "dim": head.dim, "profile": profile, "profile_probabilities": head.profile_source,
              "before (pooled features)": before, "projection alone": projected, "after (head)": after,
              "train_images": {f"{k}/{p}": len(records[(k, p)]) for k, p in train_keys},
              "seconds": round(time.time() - started, 1)}
    print(json.dumps(report, indent=2))
    if args.write:
        head.save(args.bundle)
        stale_vote = args.bundle / VOTE_FILE
        if stale_vote.is_file() and not args.keep_projection:  # its rows live in the old projection's space
            stale_vote.unlink()
            manifest.pop("neighbour_vote", None)
            print(f"removed {stale_vote}: rebuild it on the new head (classification.build_neighbour_vote)")
        command = "python -m classification.train_embedding_head " + " ".join(sys.argv[1:] if argv is None else argv)
        earlier = manifest.get("embedding") or {}
        manifest["embedding"] = {
            "source": "the trunk's globally pooled features (layer gap), L2-normalised, projected; then the "
                      "class profile; the whole vector L2-normalised",
            "head": earlier.get("head", {}) | {"version": head.version, "dim": head.dim} if args.keep_projection else {
                     "file": "embedding_head.npz", "version": head.version, "dim": head.dim, "dtype": "float16",
                     "projection_dim": projection.dim,
                     "loss": f"normalised softmax over label proxies (cosine x {args.scale}), one proxy set per "
                             "label set; an image counts only in the sets it is labelled in",
                     "label_sets": {name: int((values != MISSING).sum()) for name, values in labels.items()},
                     "loss_weights": weights,
                     "epochs": args.epochs, "learning_rate": args.lr, "optimizer": "AdamW, cosine decay",
                     "trained_on": "pooled features of the bundle's training split only (each kind's train part)",
                     "final_losses": {key: values[-1] for key, values in history.items()}},
            "profile": {"weights": profile, "probabilities": head.profile_source,
                        "what": "square roots of these tasks' predicted probabilities (" + PROFILE_WHAT[head.profile_source]
                                + "), times the weight, after the projection (inner product of two: the Bhattacharyya "
                                  "coefficient)",
                        "chosen_on": "the largest weighted sum of precision@10: " + ", ".join(
                            f"{weight} x {gallery} {label_set}" for (gallery, label_set), weight in objective.items())
                            + f"; each weight from {list(PROFILE_GRID)}",
                        "candidates": [{"weights": c["weights"], "objective": round(c["objective"], 4),
                                        "precision@10": {name: round(v, 4) for name, v in c["precision"].items()}}
                                       for c in candidates]},
            "precision@10": {"pooled_features": before, "projection": projected, "embedding": after},
            "command": command}
        if args.keep_projection:  # the projection is the earlier command's
            manifest["embedding"]["projection_command"] = earlier.get("projection_command", earlier.get("command"))
        (args.bundle / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
