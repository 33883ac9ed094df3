"""Garment tags end to end on held-out street photos, with the detector prior off / hard / soft, and hard
on the garments of photos the classifier's kind gate reads as street photos (served:
GARMENT_DETECTOR_PRIOR_KINDS), that last also with the garments of photos the gate reads otherwise read
with their whole photo (served: GARMENT_CONTEXT, on phone photos).

    nice -n 15 .venv/bin/python bench/street_tags.py [--classifier models/fashion-lite0] \
        [--detector models/ccp-maskrcnn-efflite0] [--data ../shared/datasets/clothing-co-parsing]

The photos are Clothing Co-Parsing's validation split of the detector bundle (`split.json`, `val`):
neither model trained on them (the classifier's street crops use the same split). Each photo goes
through the serving code: the app's decoder, the detector at its serving threshold with the pipeline's
minimum garment size, its garment crops (`--garment-crop`, GARMENT_CROP), and the classifier's `describe` with the allowed articleTypes
`DetectorPrior.for_detection` gives (what `Pipeline._analyse_many` calls); the model runs once and
every prior variant re-decodes the same probabilities (a check re-runs the pipeline itself on a few
photos and asserts the same tags).

Ground truth: one instance per connected region of each CCP pixel label (`detection.records.read_ccp`
with one class per raw label, as the classifier's street crops), its allowed masterCategories and
articleTypes from the CCP label map (`classification.photo_datasets.resolver`, as
`classification.evaluate` scores crops). Detections are matched to instances by box IoU >= 0.5,
greedily by score, whatever their class; unmatched detections are false positives, reported apart.
Matched garments are scored as `evaluate_allowed_sets` scores crops: articleType group accuracy (the
decoded articleType is one the label allows) and masterCategory accuracy, as a mean over labels and
over garments. Writes bench/results/street-tags-<time>.json and prints Markdown tables.

With `--catalogue ../shared/datasets/fashion-product-images-small`, also search by street photo: each
matched garment's embedding (as the pipeline makes it, prior off and hard) searched in the catalogue
test split; a thumbnail found counts when the garment's label allows its articleType; and a PNG beside the
report (street-tags-<time>.png): eight garments drawn at random and their five nearest thumbnails, as served.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402  (before TensorFlow)
import torchvision  # noqa: E402,F401
from torchvision.ops import box_iou  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from app.config import Settings  # noqa: E402
from detection.inference import COMPUTE_DTYPES  # noqa: E402
from app.crops import STYLES as GARMENT_CROPS  # noqa: E402
from app.fetch import decode  # noqa: E402
from app.pipeline import Pipeline  # noqa: E402
from app.fragments import GarmentFragments  # noqa: E402
from bench.results import write_report  # noqa: E402
from bench.retrieval_quality import embed_files, search_in_catalogue  # noqa: E402
from classification.catalogue import read_catalogue  # noqa: E402
from classification.plots import image_grid  # noqa: E402
from classification.detector_prior import CCP_LABEL_MAP, DetectorPrior, allowed_where  # noqa: E402
from classification.garment_context import GarmentContext  # noqa: E402
from classification.evaluate import allowed_set_scores  # noqa: E402
from classification.intervals import interval_name  # noqa: E402
from classification.label_map import LabelMap  # noqa: E402
from classification.metrics import PHOTO_KIND_FIGURES  # noqa: E402
from classification.photo_datasets import resolver  # noqa: E402
from detection.records import ccp_label_names, read_ccp  # noqa: E402
from detection.taxonomy import CCP_GROUPS  # noqa: E402

CCP = ROOT.parent / "shared" / "datasets" / "clothing-co-parsing"
# Variants: the prior off, then hard and soft (factor on paths outside the allowed set) at a few
# minimum detector scores (0: every served detection, the serving threshold already applied). Path
# probabilities are products over three levels, so they are peaked: useful soft factors are small.
WEIGHTS = ("hard", "soft:0.1", "soft:0.01", "soft:0.001", "soft:0.0001", "soft:1e-06")
MIN_SCORES = (0.0, 0.7, 0.9)
CHECKED_PHOTOS = 3
EXAMPLE_GARMENTS, EXAMPLE_RESULTS = 8, 5  # the search-by-street-photo figure: garments drawn, results shown each


def match(detections, instances, threshold: float) -> list[int | None]:
    """For each detection (any order) the index of its instance or None; greedy by falling score."""
    taken, out = set(), [None] * len(detections)
    if not detections or not instances:
        return out
    ious = box_iou(torch.tensor([d.box for d in detections], dtype=torch.float32),
                   torch.tensor([g.box for g in instances], dtype=torch.float32)).numpy()
    for d in sorted(range(len(detections)), key=lambda i: -detections[i].score):
        best, best_iou = None, threshold
        for g in range(len(instances)):
            if g not in taken and ious[d, g] >= best_iou:
                best, best_iou = g, ious[d, g]
        if best is not None:
            taken.add(best)
            out[d] = best
    return out


def score(garments: list[dict], tags: list[dict]) -> dict:
    """evaluate_allowed_sets' figures for matched garments and their decoded tags, with their 95% intervals."""
    report, group_ok, master_ok = allowed_set_scores([g["allowed"] for g in garments], [g["label"] for g in garments], tags,
                                                     intervals=True)
    return {
        "garments": report["images"], "labels": report["labels"],
        **{key: report[key] for key in ("articleType_group_accuracy", "articleType_group_accuracy_micro",
                                        "masterCategory_accuracy_mean_over_labels", "masterCategory_accuracy",
                                        *map(interval_name, PHOTO_KIND_FIGURES))},
        "constrained": int(sum(t["category_constrained"] for t in tags)),
        "_group_ok": group_ok, "_master_ok": master_ok,
    }


def main(argv=None) -> dict:
    defaults = Settings()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classifier", type=Path, default=defaults.classifier_bundle)
    parser.add_argument("--detector", type=Path, default=defaults.detector_bundle)
    parser.add_argument("--data", type=Path, default=CCP, help="Clothing Co-Parsing folder")
    parser.add_argument("--split", type=Path, help="photo split (default: <detector>/split.json)")
    parser.add_argument("--iou", type=float, default=0.5)
    parser.add_argument("--limit", type=int, help="only the first N validation photos (a quick look)")
    parser.add_argument("--catalogue", type=Path,
                        help="fashion-product-images-small: also search each matched garment in the classifier's "
                             "held-out catalogue test split (search by street photo; 2 min more)")
    parser.add_argument("--garment-crop", choices=GARMENT_CROPS, default=defaults.garment_crop,
                        help="how garments are cut out for the classifier (app/crops.py)")
    parser.add_argument("--detector-compute-dtype", choices=COMPUTE_DTYPES, default=defaults.detector_compute_dtype,
                        help="DETECTOR_COMPUTE_DTYPE: the detector backbone's arithmetic on the CPU")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    settings = defaults.replace(classifier_bundle=args.classifier, detector_bundle=args.detector, device="cpu",
                                garment_crop=args.garment_crop, detector_compute_dtype=args.detector_compute_dtype)
    pipeline = Pipeline.load(settings)  # the serving load path (prior off: variants are decoded below)
    classifier, taxonomy = pipeline.classifier, pipeline.classifier.taxonomy
    label_map = LabelMap.load(CCP_LABEL_MAP)
    resolve = resolver(label_map, taxonomy)
    names = ccp_label_names(args.data)
    # One instance class per raw CCP label (as read_street_crops): every detector garment label and
    # every label the map scores; labels that resolve to nothing are matched but not scored.
    garment_labels = {name for members in CCP_GROUPS.values() for name in members}
    candidates = {v: n for v, n in enumerate(names) if n and (n in garment_labels or n in label_map.labels)}
    class_of_label = {name: group for group, members in CCP_GROUPS.items() for name in members}

    val = set(json.loads((args.split or args.detector / "split.json").read_text())["val"])
    photos = [r for r in read_ccp(args.data, pixel_to_class={v: v for v in candidates}) if r.image_id in val]
    photos = photos[:args.limit] if args.limit else photos

    started = time.perf_counter()
    images, crops, garments, false_positives, missed, unscored = [], [], [], Counter(), 0, 0
    detections_per_photo, matched_per_photo = [], []
    for record in photos:
        image = decode(record.image_path.read_bytes(), settings)
        if image.shape[:2] != (record.height, record.width):
            raise SystemExit(f"{record.image_path}: decoded {image.shape[:2]}, annotated {record.height}x{record.width}")
        found = [d for d in pipeline.detector.detect([image])[0] if pipeline._big_enough(d)]
        instances = record.instances()
        matched = match(found, instances, args.iou)
        missed += len(instances) - sum(m is not None for m in matched)
        images.append(image)
        detections_per_photo.append(found)
        matched_per_photo.append([m is not None for m in matched])
        for detection, g in zip(found, matched):
            if g is None:
                false_positives[detection.label] += 1
                continue
            label = candidates[instances[g].category]
            allowed = resolve(label) if label not in label_map.ignore else None
            if allowed is None:
                unscored += 1
                continue
            crops.append(pipeline.crop(image, detection))
            garments.append({"photo": record.image_id, "photo_row": len(images) - 1, "label": label, "allowed": allowed,
                             "detector": detection.label, "score": detection.score,
                             "detector_right": class_of_label.get(label) == detection.label})
    detect_seconds = time.perf_counter() - started
    features, model_probs = classifier.embedding_inputs(crops, garments=[True] * len(crops))  # as the pipeline reads garments
    probs = classifier.voted(features, model_probs)  # the served probabilities (predict_proba's)
    whole_features, whole_probs = classifier.embedding_inputs(images)
    photo_kinds = classifier.image_kinds(whole_features)  # the gate on each whole photo
    whole_probs = classifier.voted(whole_features, whole_probs)
    context = GarmentContext.parse(settings.garment_context, settings.garment_context_kinds)

    # Every garment (the prior's `all` kinds), then only those of photos the kind gate reads as street (served).
    variants = [DetectorPrior()] + [
        DetectorPrior.parse(weight, taxonomy, min_score) for weight in WEIGHTS for min_score in MIN_SCORES] + [
        DetectorPrior.parse("hard", taxonomy, 0.0, "street")]
    results, per_class = {}, defaultdict(dict)
    for prior, pooled in [(prior, False) for prior in variants] + [(variants[-1], True)]:
        allowed = constrained(prior, garments, photo_kinds)
        served = in_context(context, probs, whole_probs, garments, photo_kinds) if pooled else probs
        tags = classifier.describe(served, allowed, prior.weight)  # what the pipeline's classify stage calls
        figures = score(garments, tags)
        name = prior.name + (f" + context:{context.name}" if pooled else "")
        results[name] = {k: v for k, v in figures.items() if not k.startswith("_")}
        for cls in sorted({g["detector"] for g in garments}):
            rows = [i for i, g in enumerate(garments) if g["detector"] == cls]
            per_class[cls][name] = {"group": float(figures["_group_ok"][rows].mean()),
                                          "master": float(figures["_master_ok"][rows].mean())}
    for cls, rows in per_class.items():
        members = [g for g in garments if g["detector"] == cls]
        rows["garments"] = len(members)
        rows["detector_precision_matched"] = float(np.mean([g["detector_right"] for g in members]))
        rows["labels"] = dict(Counter(g["label"] for g in members).most_common(4))

    best = max(results, key=lambda n: (round(results[n]["articleType_group_accuracy"], 4),
                                       round(results[n]["masterCategory_accuracy"], 4)))
    fragments = fragments_dropped(settings, detections_per_photo, matched_per_photo, photo_kinds)
    check = pipeline_check(pipeline, images[:CHECKED_PHOTOS], detections_per_photo[:CHECKED_PHOTOS], taxonomy)

    report = {
        # the tags' version (mirror view, neighbour vote) and the embedding space's
        "classifier": classifier.versions["category"].rsplit("/", 1)[0],
        "classifier_embedding": classifier.embedding_version, "detector": pipeline.detector.version,
        "garment_crop": pipeline.garment_crop,
        "classifier_bundle": str(args.classifier), "detector_bundle": str(args.detector),
        "photos": len(photos), "iou": args.iou, "garment_min_side": settings.garment_min_side,
        "detections": sum(len(d) for d in detections_per_photo),
        "garment_fragments": fragments,
        "matched_scored": len(garments), "matched_unscored": unscored,
        "false_positives": sum(false_positives.values()), "false_positives_by_class": dict(false_positives),
        "missed_instances": missed,
        "detector_class_right_on_matched": float(np.mean([g["detector_right"] for g in garments])),
        "photo_kinds": dict(Counter(photo_kinds or ["no kind gate"]).most_common()),
        "variants": results, "best": best, "per_detector_class": per_class,
        "pipeline_check": check, "detect_seconds": round(detect_seconds, 1),
    }
    examples = None
    if args.catalogue:
        report["search_in_catalogue"], examples = search_by_garment(
            classifier, crops, garments, photo_kinds, args.catalogue, args.classifier, settings.similarity_query_expansion)
        print(json.dumps(report["search_in_catalogue"]))
    path = write_report("street-tags", report)
    if examples:
        image_grid(*examples, path.with_suffix(".png"), columns=EXAMPLE_RESULTS + 1)
        print(f"written {path.with_suffix('.png')}")
    print(markdown(report))
    return report


def constrained(prior: DetectorPrior, garments: list[dict], photo_kinds: list[str] | None) -> list:
    """Each garment's allowed paths under `prior`: the detector class's, where the kind gate reads its
    whole photo as one of the prior's kinds (the rule the classifier applies, allowed_where; pipeline_check
    compares)."""
    allowed = [prior.for_detection(g["detector"], g["score"]) for g in garments]
    if prior.kinds is None:
        return allowed
    return allowed_where(allowed, photo_kinds, prior.kinds, [g["photo_row"] for g in garments])


def search_by_garment(classifier, crops, garments, photo_kinds, catalogue_folder: Path, bundle: Path, expansion: int,
                      k: int = 10) -> dict:
    """Each matched garment searched in the catalogue test split the classifier never trained on, its
    embedding made as the pipeline makes it with the detector prior off and hard (a profile of the served
    probabilities reads the category within the detector class's paths, as the tags do): precision@k of
    thumbnails whose articleType the garment's label allows (bench.retrieval_quality.search_in_catalogue)."""
    split = json.loads((bundle / "split.json").read_text())["test"]
    catalogue = {r.id: r for r in read_catalogue(catalogue_folder).records}
    gallery = [catalogue[i] for i in split if i in catalogue]
    vectors = embed_files(classifier, [r.image_path for r in gallery], desc="catalogue test split")
    features, probs = classifier.embedding_inputs(crops, garments=[True] * len(crops))  # one pass; each prior re-reads it
    queries = [SimpleNamespace(allowed=g["allowed"]) for g in garments]
    out = {}
    for prior in (DetectorPrior(), DetectorPrior.parse("hard", classifier.taxonomy),
                  DetectorPrior.parse("hard", classifier.taxonomy, 0.0, "street")):
        allowed = constrained(prior, garments, photo_kinds)
        profile = classifier.profile_probabilities(features, probs, allowed, prior.weight)
        found = classifier.embedding_of(features, probs, profile).astype(np.float16).astype(np.float32)
        out[prior.name] = search_in_catalogue(found, queries, vectors, gallery, k, expansion)
    return out, examples_grid(crops, garments, found, vectors, gallery)


def examples_grid(crops, garments, found: np.ndarray, vectors: np.ndarray, gallery: list) -> tuple[list, list, str]:
    """Images, captions and title of a PNG: garments drawn at random (seed 0), each followed by its nearest
    catalogue thumbnails as served (hard prior; plain search), marked ok when the garment's label allows them."""
    rows = np.random.default_rng(0).choice(len(garments), min(EXAMPLE_GARMENTS, len(garments)), replace=False)
    images, captions = [], []
    for row in rows:
        garment = garments[row]
        images.append(crops[row])
        captions.append(f"{garment['label']} (detector: {garment['detector']})")
        for index in np.argsort(-(vectors @ found[row]), kind="stable")[:EXAMPLE_RESULTS]:
            article = gallery[index].get("articleType")
            with Image.open(gallery[index].image_path) as thumbnail:
                images.append(np.asarray(thumbnail.convert("RGB")))
            ok = article in garment["allowed"].get("articleType", ())
            captions.append(f"{article}: {'ok' if ok else 'not allowed'}")
    return images, captions, "Garments of held-out street photos, searched in the catalogue test split (served, prior hard)"


def in_context(context: GarmentContext, probs: dict, whole_probs: dict, garments: list[dict],
               photo_kinds: list[str] | None) -> dict:
    """The garments' probabilities pooled with their whole photo's where the kind gate reads it as one of
    the context's kinds (GarmentContext.apply, as the classifier applies it in the pipeline)."""
    wholes = len(whole_probs["articleType"])
    stacked = {task: np.concatenate([whole_probs[task], probs[task]]) for task in probs}
    read = None if photo_kinds is None else list(photo_kinds) + [None] * len(garments)
    rows = list(range(wholes)) + [g["photo_row"] for g in garments]
    return {task: values[wholes:] for task, values in context.apply(stacked, read, rows).items()}


def pipeline_check(pipeline: Pipeline, images, detections, taxonomy) -> dict:
    """Run Pipeline._analyse_many itself (the served prior: hard, street crops) on a few photos and compare
    with the re-decoding."""
    hard = Pipeline(pipeline.detector, pipeline.classifier, garment_min_side=pipeline.garment_min_side,
                    prior=DetectorPrior.parse("hard", taxonomy, 0.0, "street"), garment_crop=pipeline.garment_crop)
    items = hard._analyse_many(images, {})
    served = [i["category"]["articleType"]["label"] for per_image in items for i in per_image if i["kind"] == "garment"]
    crops = [pipeline.crop(image, d) for image, found in zip(images, detections) for d in found]
    photo_kinds = pipeline.classifier.image_kinds(pipeline.classifier.embedding_inputs(images)[0])
    garments = [{"detector": d.label, "score": d.score, "photo_row": row}
                for row, found in enumerate(detections) for d in found]
    allowed = constrained(hard.prior, garments, photo_kinds)
    classifier = pipeline.classifier
    features, probs = classifier.embedding_inputs(crops, garments=[True] * len(crops))
    redecoded = [t["articleType"]["label"] for t in classifier.describe(classifier.voted(features, probs), allowed)]
    if served != redecoded:
        raise SystemExit(f"the pipeline and the re-decoding disagree: {served} vs {redecoded}")
    return {"photos": len(images), "garments": len(served), "same_articleTypes": True}


def fragments_dropped(settings: Settings, detections_per_photo, matched_per_photo, photo_kinds) -> dict:
    """What the fragments rule (app/fragments.py) drops here: as served (on the kinds it is set for), and on
    every photo; a dropped detection matched to an annotated garment is a real garment lost."""
    out = {}
    for name, kinds in (("served", settings.garment_fragment_kinds), ("every photo", "all")):
        rule = GarmentFragments.parse(settings.garment_fragments, kinds)
        dropped = matched = 0
        for row, (found, hits) in enumerate(zip(detections_per_photo, matched_per_photo)):
            kept = set(rule.kept([d.box for d in found], photo_kinds[row] if photo_kinds else None))
            dropped += sum(i not in kept for i in range(len(found)))
            matched += sum(i not in kept and hit for i, hit in enumerate(hits))
        out[name] = {"rule": rule.name, "detections_dropped": dropped, "matched_garments_dropped": matched}
    return out


def markdown(report: dict) -> str:
    out = [f"Garment crops: {report['garment_crop']}. "
           f"Held-out CCP street photos: {report['photos']}, detections {report['detections']} "
           f"(matched+scored {report['matched_scored']}, matched unscored {report['matched_unscored']}, "
           f"false positives {report['false_positives']}), missed instances {report['missed_instances']}; "
           f"detector class right on matched garments: {report['detector_class_right_on_matched']:.3f}; "
           f"the kind gate reads the photos as {report['photo_kinds']}; garment fragments dropped (detections / "
           "of them matched to an annotated garment): " + ", ".join(
               f"{name} ({r['rule']}) {r['detections_dropped']} / {r['matched_garments_dropped']}"
               for name, r in report.get("garment_fragments", {}).items()), "",
           "| prior | articleType group (mean over labels; 95% interval) | group (over garments) | masterCategory (over garments) "
           "| masterCategory (mean over labels) | constrained |", "|---|---:|---:|---:|---:|---:|"]
    for name, r in report["variants"].items():
        mark = " **best**" if name == report["best"] else ""
        low, high = r[interval_name("articleType_group_accuracy")]
        out.append(f"| {name}{mark} | {r['articleType_group_accuracy']:.3f} ({low:.3f}-{high:.3f}) "
                   f"| {r['articleType_group_accuracy_micro']:.3f} "
                   f"| {r['masterCategory_accuracy']:.3f} | {r['masterCategory_accuracy_mean_over_labels']:.3f} "
                   f"| {r['constrained']} |")
    shown = ["off", "hard", "hard/street"] + ([report["best"]] if report["best"] not in ("off", "hard", "hard/street") else [])
    out += ["", "Per detector class (matched garments; group / masterCategory accuracy over garments):", "",
            "| detector class | garments | detector right | " + " | ".join(shown) + " | labels |",
            "|---|---:|---:|" + "---:|" * len(shown) + "---|"]
    for cls, rows in sorted(report["per_detector_class"].items(), key=lambda kv: -kv[1]["garments"]):
        cells = " | ".join(f"{rows[n]['group']:.2f} / {rows[n]['master']:.2f}" for n in shown)
        labels = ", ".join(f"{k} {v}" for k, v in rows["labels"].items())
        out.append(f"| {cls} | {rows['garments']} | {rows['detector_precision_matched']:.2f} | {cells} | {labels} |")
    return "\n".join(out)


if __name__ == "__main__":
    main()
