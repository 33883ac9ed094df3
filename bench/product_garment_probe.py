"""Should a phone photo's own tags be read with the garment the detector found on it? A probe on the held-out phone photos.

    nice -n 15 .venv/bin/python bench/product_garment_probe.py [--limit N] [--reuse]
    nice -n 15 .venv/bin/python bench/product_garment_probe.py --kind catalogue [--limit N]

The pipeline reads a phone photo twice: the whole photo at the classifier's input size (the product
item's tags) and each garment the detector kept, cut out by its box and read at the garment input size
(more of the network's pixels on the garment). The garment context already pools each garment's category
with its photo's (classification/garment_context.py); this probes the other direction. The candidate
rule: on images the kind gate reads as a phone photo, whose detections leave exactly one garment once
fragments are dropped (app/fragments.py), the product's category probabilities become the whole photo's
pooled with that garment's own (log: p^(1 - w) q^w renormalised; linear: (1 - w) p + w q), before its
path is decoded. A photo with two garments keeps its own reading: the photo names no single one.

Measured through the serving pieces the pipeline uses (decode, detector, garment crops, the classifier's
served probabilities, the kind gate, the joint path decoding): the product's articleType group accuracy
(mean over the 16 labels, and over photos) and masterCategory accuracy, for each w; w chosen on half of
the validation senders and scored on the other half, both ways, six random halves (the mean over
labels plus the accuracy over photos, equally weighted), so the figure is not the held-out photos
choosing their own rule.

`--kind catalogue` asks the same of catalogue thumbnails (the rule on images the gate reads as catalogue):
the variant is chosen on the bundle's catalogue validation split (the sum of the four category tasks'
accuracies) and scored on its test split (`--limit N` draws N of each, seeded).

Writes bench/results/product-garment-<time>.json and prints Markdown.
"""
from __future__ import annotations

import json
import os
import pickle
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402  (before TensorFlow)
import torchvision  # noqa: E402,F401
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from app.config import Settings  # noqa: E402
from app.fetch import decode  # noqa: E402
from app.pipeline import Pipeline  # noqa: E402
from bench.garment_context_probe import MIXED_TASKS, POOLING, cross_half, pooled, read  # noqa: E402
from bench.photo_garments import photo_arguments, validation_photos  # noqa: E402
from bench.results import write_report  # noqa: E402
from classification.catalogue import read_catalogue  # noqa: E402
from classification.product_garment import ProductGarment  # noqa: E402

WEIGHTS = (0.0, 0.2, 0.35, 0.5, 0.65)
CATALOGUE_WEIGHTS = (0.0, 0.1, 0.2, 0.35, 0.5)  # a thumbnail's garment read alone is the weaker view there
CATALOGUE = ROOT.parent / "shared" / "datasets" / "fashion-product-images-small"


def product_tags(pipeline: Pipeline, reading: dict, w: float, pooling: str, kind: str) -> dict:
    """The product's decoded category labels with the rule at weight w, on images the gate reads as `kind`."""
    probs = reading["probs"]
    product = {task: probs[task][:1].copy() for task in MIXED_TASKS}
    garment = one_garment(pipeline, reading, kind)
    if garment is not None and w > 0:
        for task in MIXED_TASKS:
            product[task] = pooled(product[task], probs[task][1 + garment:2 + garment], w, pooling)
    for task, classes in pipeline.classifier.taxonomy.labels.items():  # the style tasks do not take part
        product.setdefault(task, np.full((1, len(classes)), 1 / len(classes), np.float32))
    tag = pipeline.classifier.describe(product)[0]
    return {task: tag[task]["label"] for task in MIXED_TASKS}


def one_garment(pipeline: Pipeline, reading: dict, kind: str) -> int | None:
    """The index of the one garment an image the gate read as `kind` keeps once fragments are dropped; None
    otherwise: the served rule's own pairing (ProductGarment.pairs) with the pipeline's fragments rule."""
    rows = [0] * (1 + len(reading["boxes"]))  # the image, then its garments, all cut from row 0
    pair = ProductGarment("log", 1.0, frozenset({kind})).pairs(
        [reading["kind"]] * len(rows), rows,
        lambda row, read_as: [1 + i for i in pipeline.fragments.kept(reading["boxes"], read_as)])
    return pair[0] - 1 if pair else None


def scores(pipeline: Pipeline, photos: list[dict], w: float, pooling: str) -> dict:
    by_label = defaultdict(list)
    master = []
    for photo in photos:
        tags = product_tags(pipeline, photo["reading"], w, pooling, "photo")
        by_label[photo["label"]].append(tags["articleType"] in photo["allowed"])
        master.append(tags["masterCategory"] in photo["allowed_master"])
    hits = [h for values in by_label.values() for h in values]
    return {"group_accuracy_mean_over_labels": float(np.mean([np.mean(v) for v in by_label.values()])),
            "group_accuracy": float(np.mean(hits)), "masterCategory_accuracy": float(np.mean(master)),
            "per_label": {label: round(float(np.mean(v)), 4) for label, v in sorted(by_label.items())}}


def catalogue_scores(pipeline: Pipeline, thumbnails: list[dict], w: float, pooling: str) -> dict:
    """Each category task's accuracy against the catalogue's labels (thumbnails without the label skipped)."""
    hits = defaultdict(list)
    for thumbnail in thumbnails:
        tags = product_tags(pipeline, thumbnail["reading"], w, pooling, "catalogue")
        for task, label in thumbnail["labels"].items():
            if label:
                hits[task].append(tags[task] == label)
    return {f"{task}_accuracy": float(np.mean(hits[task])) for task in MIXED_TASKS if hits[task]}


def catalogue_main(args, pipeline: Pipeline, settings: Settings, variants: list) -> dict:
    split = json.loads((args.classifier / "split.json").read_text())
    catalogue = {r.id: r for r in read_catalogue(args.catalogue).records}
    rng = np.random.default_rng(args.seed)
    chosen = {}
    for part in ("val", "test"):
        records = [catalogue[i] for i in split[part] if i in catalogue]
        if args.limit and args.limit < len(records):
            records = [records[i] for i in sorted(rng.choice(len(records), args.limit, replace=False))]
        chosen[part] = records
    cache = args.cache / f"catalogue-readings-{args.limit or 'all'}-{args.seed}.pkl"
    started = time.perf_counter()
    if args.reuse and cache.exists():
        thumbnails = pickle.loads(cache.read_bytes())
    else:
        thumbnails = {part: [{"id": r.id, "labels": {t: r[t] for t in MIXED_TASKS},
                              "reading": read(pipeline, decode(r.image_path.read_bytes(), settings))}
                             for r in tqdm(records, desc=f"catalogue {part} thumbnails")]
                      for part, records in chosen.items()}
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_bytes(pickle.dumps(thumbnails))
    seconds = time.perf_counter() - started
    by_variant = {f"{pooling} {w}": {part: catalogue_scores(pipeline, rows, w, pooling)
                                     for part, rows in thumbnails.items()} for pooling, w in variants}
    best = max(by_variant, key=lambda v: sum(by_variant[v]["val"].values()))
    report = {
        "kind": "catalogue", "classifier": str(args.classifier), "detector": str(args.detector),
        "detector_version": pipeline.detector.version, "garment_fragments": pipeline.fragments.name,
        "thumbnails": {part: len(rows) for part, rows in thumbnails.items()}, "seconds": round(seconds, 1),
        "read_as": {part: dict(sorted(Counter(t["reading"]["kind"] for t in rows).items()))
                    for part, rows in thumbnails.items()},
        "with_one_garment": {part: sum(one_garment(pipeline, t["reading"], "catalogue") is not None for t in rows)
                             for part, rows in thumbnails.items()},
        "by_variant": by_variant,
        "chosen_on_val": {"objective": "the sum of the four category tasks' accuracies", "variant": best,
                          "test": by_variant[best]["test"], "test_without": by_variant[variants[0][0] + " 0.0"]["test"]},
    }
    write_report("product-garment", report)
    print(catalogue_markdown(report))
    return report


def main(argv=None) -> dict:
    defaults = Settings()
    parser = photo_arguments(__doc__, defaults)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=ROOT / "runs" / "product-garment",
                        help="where the model readings are kept (--reuse reads them back)")
    parser.add_argument("--reuse", action="store_true", help="reuse the cached readings of the same photos")
    parser.add_argument("--kind", choices=("photo", "catalogue"), default="photo",
                        help="phone photos (held-out senders) or catalogue thumbnails (validation chooses, test scores)")
    parser.add_argument("--catalogue", type=Path, default=CATALOGUE, help="the catalogue (styles.csv + images/)")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    settings = defaults.replace(classifier_bundle=args.classifier, detector_bundle=args.detector, device="cpu",
                                detector_compute_dtype=args.detector_compute_dtype)
    pipeline = Pipeline.load(settings)
    weights = CATALOGUE_WEIGHTS if args.kind == "catalogue" else WEIGHTS
    variants = [(pooling, w) for pooling in POOLING for w in weights if w > 0 or pooling == POOLING[0]]
    if args.kind == "catalogue":
        return catalogue_main(args, pipeline, settings, variants)
    records = validation_photos(args, pipeline.classifier.taxonomy)
    cache = args.cache / f"readings-{args.limit or 'all'}.pkl"
    started = time.perf_counter()
    if args.reuse and cache.exists():
        photos = pickle.loads(cache.read_bytes())
    else:
        photos = []
        for record in tqdm(records, desc="phone photos"):
            image = decode(record.image_path.read_bytes(), settings)
            photos.append({"id": record.id, "sender": record.group, "label": record.source_label,
                           "allowed": frozenset(record.allowed["articleType"]),
                           "allowed_master": frozenset(record.allowed["masterCategory"]),
                           "reading": read(pipeline, image)})
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_bytes(pickle.dumps(photos))
    seconds = time.perf_counter() - started

    by_variant = {f"{pooling} {w}": scores(pipeline, photos, w, pooling) for pooling, w in variants}

    def objective(variant, senders):
        chosen = scores(pipeline, [p for p in photos if p["sender"] in senders], variant[1], variant[0])
        return (chosen["group_accuracy_mean_over_labels"] + chosen["group_accuracy"]) / 2

    cross = cross_half(variants, sorted({p["sender"] for p in photos}), objective, np.random.default_rng(args.seed))
    report = {
        "classifier": str(args.classifier), "detector": str(args.detector),
        "detector_version": pipeline.detector.version, "garment_fragments": pipeline.fragments.name,
        "photos": len(photos), "seconds": round(seconds, 1),
        "photos_read_as": dict(sorted(Counter(p["reading"]["kind"] for p in photos).items())),
        "photos_with_one_garment": sum(one_garment(pipeline, p["reading"], "photo") is not None for p in photos),
        "by_variant": by_variant,
        "cross_half": {"objective": "(mean over labels + over photos) / 2", "runs": cross,
                       "chosen": [c["chosen"] for c in cross],
                       "mean_measured": float(np.mean([c["measured"] for c in cross])),
                       "mean_w0": float(np.mean([c["w0"] for c in cross]))},
    }
    write_report("product-garment", report)
    print(markdown(report))
    return report


def markdown(report: dict) -> str:
    lines = [f"{report['photos']} held-out phone photos ({report['seconds']} s); gate: {report['photos_read_as']}; "
             f"one garment kept on {report['photos_with_one_garment']}", "",
             "| pooling, w | product group: mean over labels / over photos | masterCategory |", "|---:|---:|---:|"]
    for w, row in report["by_variant"].items():
        lines.append(f"| {w} | {row['group_accuracy_mean_over_labels']:.4f} / {row['group_accuracy']:.4f} | "
                     f"{row['masterCategory_accuracy']:.4f} |")
    cross = report["cross_half"]
    lines += ["", f"cross-half ({cross['objective']}): chosen {cross['chosen']}, measured {cross['mean_measured']:.4f} "
                  f"against {cross['mean_w0']:.4f} at w 0"]
    return "\n".join(lines)


def catalogue_markdown(report: dict) -> str:
    lines = [f"catalogue thumbnails {report['thumbnails']} ({report['seconds']} s); gate: {report['read_as']}; "
             f"one garment kept on {report['with_one_garment']}", "",
             "| pooling, w | validation: gender / master / sub / articleType | test: the same |", "|---:|---:|---:|"]
    for w, row in report["by_variant"].items():
        cells = [" / ".join(f"{row[part][f'{t}_accuracy']:.4f}" for t in MIXED_TASKS) for part in ("val", "test")]
        lines.append(f"| {w} | {cells[0]} | {cells[1]} |")
    chosen = report["chosen_on_val"]
    lines += ["", f"chosen on validation: {chosen['variant']}; test " + ", ".join(
        f"{t} {chosen['test_without'][f'{t}_accuracy']:.4f} -> {chosen['test'][f'{t}_accuracy']:.4f}" for t in MIXED_TASKS)]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
