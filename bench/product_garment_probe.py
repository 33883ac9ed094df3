"""Should a phone photo's own tags be read with the garment the detector found on it? A probe on the held-out phone photos.

    nice -n 15 .venv/bin/python bench/product_garment_probe.py [--limit N] [--reuse]

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

Writes bench/results/product-garment-<time>.json and prints Markdown.
"""
from __future__ import annotations

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
from bench.garment_context_probe import MIXED_TASKS, POOLING, pooled, read  # noqa: E402
from bench.photo_garments import photo_arguments, validation_photos  # noqa: E402
from bench.results import write_report  # noqa: E402

WEIGHTS = (0.0, 0.2, 0.35, 0.5, 0.65)


def product_tags(pipeline: Pipeline, reading: dict, w: float, pooling: str) -> dict:
    """The product's decoded articleType and masterCategory with the rule at weight w."""
    probs = reading["probs"]
    product = {task: probs[task][:1].copy() for task in MIXED_TASKS}
    garment = one_garment(pipeline, reading)
    if garment is not None and w > 0:
        for task in MIXED_TASKS:
            product[task] = pooled(product[task], probs[task][1 + garment:2 + garment], w, pooling)
    for task, classes in pipeline.classifier.taxonomy.labels.items():  # the style tasks do not take part
        product.setdefault(task, np.full((1, len(classes)), 1 / len(classes), np.float32))
    tag = pipeline.classifier.describe(product)[0]
    return {"articleType": tag["articleType"]["label"], "masterCategory": tag["masterCategory"]["label"]}


def one_garment(pipeline: Pipeline, reading: dict) -> int | None:
    """The index of the one garment a phone photo keeps once fragments are dropped; None otherwise."""
    if reading["kind"] != "photo" or not reading["boxes"]:
        return None
    kept = pipeline.fragments.kept(reading["boxes"], reading["kind"])
    return kept[0] if len(kept) == 1 else None


def scores(pipeline: Pipeline, photos: list[dict], w: float, pooling: str) -> dict:
    by_label = defaultdict(list)
    master = []
    for photo in photos:
        tags = product_tags(pipeline, photo["reading"], w, pooling)
        by_label[photo["label"]].append(tags["articleType"] in photo["allowed"])
        master.append(tags["masterCategory"] in photo["allowed_master"])
    hits = [h for values in by_label.values() for h in values]
    return {"group_accuracy_mean_over_labels": float(np.mean([np.mean(v) for v in by_label.values()])),
            "group_accuracy": float(np.mean(hits)), "masterCategory_accuracy": float(np.mean(master)),
            "per_label": {label: round(float(np.mean(v)), 4) for label, v in sorted(by_label.items())}}


def main(argv=None) -> dict:
    defaults = Settings()
    parser = photo_arguments(__doc__, defaults)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=ROOT / "runs" / "product-garment",
                        help="where the model readings are kept (--reuse reads them back)")
    parser.add_argument("--reuse", action="store_true", help="reuse the cached readings of the same photos")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    settings = defaults.replace(classifier_bundle=args.classifier, detector_bundle=args.detector, device="cpu",
                                detector_compute_dtype=args.detector_compute_dtype)
    pipeline = Pipeline.load(settings)
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

    variants = [(pooling, w) for pooling in POOLING for w in WEIGHTS if w > 0 or pooling == POOLING[0]]
    by_variant = {f"{pooling} {w}": scores(pipeline, photos, w, pooling) for pooling, w in variants}

    def objective(variant, senders):
        chosen = scores(pipeline, [p for p in photos if p["sender"] in senders], variant[1], variant[0])
        return (chosen["group_accuracy_mean_over_labels"] + chosen["group_accuracy"]) / 2

    rng = np.random.default_rng(args.seed)
    senders = sorted({p["sender"] for p in photos})
    cross = []
    for _ in range(6):
        half = set(rng.permutation(senders)[:len(senders) // 2].tolist())
        for choose, measure in ((half, set(senders) - half), (set(senders) - half, half)):
            best = max(variants, key=lambda v: objective(v, choose))
            cross.append({"chosen": f"{best[0]} {best[1]}", "measured": objective(best, measure),
                          "w0": objective(variants[0], measure)})
    report = {
        "classifier": str(args.classifier), "detector": str(args.detector),
        "detector_version": pipeline.detector.version, "garment_fragments": pipeline.fragments.name,
        "photos": len(photos), "seconds": round(seconds, 1),
        "photos_read_as": dict(sorted(Counter(p["reading"]["kind"] for p in photos).items())),
        "photos_with_one_garment": sum(one_garment(pipeline, p["reading"]) is not None for p in photos),
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


if __name__ == "__main__":
    main()
