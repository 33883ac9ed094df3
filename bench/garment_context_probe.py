"""Should a phone photo's garments be read with their whole photo? A probe on the held-out phone photos.

    nice -n 15 .venv/bin/python bench/garment_context_probe.py [--limit N] [--pairs 300]

On a phone photo of one garment the detector (which learnt on street photos of people) often boxes part
of it, a leg of shorts or a sleeve, and the classifier names that part wrongly, while the whole photo is
named right far more often (bench/photo_garments.py). The candidate rule: on images the classifier's
kind gate reads as a phone photo, each garment's category probabilities become
(1 - w) x its own + w x the whole image's, before its path is decoded.

The risk is a photo of two garments (an outfit laid flat), where the whole image names one of them. So
the probe also builds **pairs**: two held-out photos of different articleType groups side by side on one
canvas; a garment's truth is the label of the half its box lies in (boxes across the middle are
skipped). Measured for each w, through the serving pieces the pipeline uses (decode, detector, garment
crops, the classifier's served probabilities, the kind gate, the joint path decoding):

- single photos: the garments' articleType group accuracy (all, and the largest per photo) and how many
  are off-label;
- pairs: the garments' group accuracy by the half they lie in, and how many pairs the gate reads as a
  phone photo (only those are mixed);
- w chosen on half of the validation senders and scored on the other half, both ways, six random halves
  (the single photos' largest-garment accuracy plus the pairs' garment accuracy, equally weighted).

Writes bench/results/garment-context-<time>.json and prints Markdown.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402  (before TensorFlow)
import torchvision  # noqa: E402,F401
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from tqdm import tqdm  # noqa: E402

from app.config import Settings  # noqa: E402
from app.fetch import decode  # noqa: E402
from app.pipeline import Pipeline  # noqa: E402
from bench.photo_garments import photo_arguments, validation_photos  # noqa: E402
from bench.results import write_report  # noqa: E402
from classification.taxonomy import HIERARCHY_LEVELS  # noqa: E402

WEIGHTS = (0.0, 0.2, 0.35, 0.5, 0.65, 0.8, 1.0)
POOLING = ("linear", "log")  # (1 - w) p + w q, or p^(1 - w) q^w renormalised (a confident garment keeps its reading)
MIXED_TASKS = ("gender", *HIERARCHY_LEVELS)  # the category group: what a garment shares with its product
PAIR_HEIGHT = 640


def read(pipeline: Pipeline, image: np.ndarray) -> dict:
    """The served probabilities of the whole image and of each garment, the garments' boxes and areas, and
    how the kind gate reads the whole image: what the candidate rule needs to be applied offline."""
    found = [d for d in pipeline.detector.detect([image])[0] if pipeline._big_enough(d)]
    crops = [image] + [pipeline.crop(image, d) for d in found]
    classifier = pipeline.classifier
    features, probs = classifier.embedding_inputs(crops, garments=[False] + [True] * len(found))  # as the pipeline reads them
    served = classifier.voted(features, probs)
    return {"kind": classifier.image_kinds(features[:1])[0],
            "probs": {task: served[task].astype(np.float32) for task in MIXED_TASKS},
            "boxes": [list(map(float, d.box)) for d in found]}


def side_by_side(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, int]:
    """Two photos scaled to one height on one canvas; the x where the right one starts."""
    def scaled(image):
        height, width = image.shape[:2]
        return np.asarray(Image.fromarray(image).resize((round(width * PAIR_HEIGHT / height), PAIR_HEIGHT),
                                                        Image.BILINEAR))
    left, right = scaled(left), scaled(right)
    return np.concatenate([left, right], axis=1), left.shape[1]


def pooled(own: np.ndarray, whole: np.ndarray, w: float, pooling: str) -> np.ndarray:
    if pooling == "linear":
        return (1 - w) * own + w * whole
    logs = (1 - w) * np.log(np.maximum(own, 1e-12)) + w * np.log(np.maximum(whole, 1e-12))
    out = np.exp(logs - logs.max(axis=1, keepdims=True))
    return out / out.sum(axis=1, keepdims=True)


def garment_articles(pipeline: Pipeline, reading: dict, w: float, pooling: str) -> list[str]:
    """Each garment's decoded articleType with the rule at weight w (only on images read as photos)."""
    probs = reading["probs"]
    if len(probs["articleType"]) < 2:
        return []
    garments = {task: probs[task][1:].copy() for task in MIXED_TASKS}
    if reading["kind"] == "photo" and w > 0:
        for task in MIXED_TASKS:
            garments[task] = pooled(garments[task], probs[task][:1], w, pooling)
    full = {task: garments[task] for task in MIXED_TASKS}
    for task, classes in pipeline.classifier.taxonomy.labels.items():  # the style tasks do not take part
        full.setdefault(task, np.full((len(garments["articleType"]), len(classes)), 1 / len(classes), np.float32))
    return [tag["articleType"]["label"] for tag in pipeline.classifier.describe(full)]


def area(box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def single_scores(pipeline, singles: list[dict], w: float, pooling: str) -> dict:
    garments = largest = off = 0
    largest_ok = ok = 0
    for photo in singles:
        articles = garment_articles(pipeline, photo["reading"], w, pooling)
        if not articles:
            continue
        hits = [a in photo["allowed"] for a in articles]
        garments += len(hits)
        ok += sum(hits)
        off += len(hits) - sum(hits)
        biggest = int(np.argmax([area(b) for b in photo["reading"]["boxes"]]))
        largest += 1
        largest_ok += hits[biggest]
    return {"garments": garments, "garment_group_accuracy": ok / max(garments, 1), "off_label_garments": off,
            "photos_with_garments": largest, "largest_garment_group_accuracy": largest_ok / max(largest, 1)}


def pair_scores(pipeline, pairs: list[dict], w: float, pooling: str) -> dict:
    garments = ok = 0
    for pair in pairs:
        articles = garment_articles(pipeline, pair["reading"], w, pooling)
        for article, box in zip(articles, pair["reading"]["boxes"]):
            if box[0] < pair["middle"] <= box[2]:
                continue  # across both photos: no single truth
            allowed = pair["allowed"][0] if box[2] <= pair["middle"] else pair["allowed"][1]
            garments += 1
            ok += article in allowed
    return {"garments": garments, "garment_group_accuracy": ok / max(garments, 1)}


def cross_half(variants: list, senders: list, score, rng: np.random.Generator, rounds: int = 6) -> list[dict]:
    """The senders halved at random `rounds` times; on each half the variant `score(variant, senders)` ranks
    first is chosen and scored on the other half, both ways, beside the first variant (the rule off) there."""
    runs = []
    for _ in range(rounds):
        half = set(rng.permutation(senders)[:len(senders) // 2].tolist())
        for choose, measure in ((half, set(senders) - half), (set(senders) - half, half)):
            best = max(variants, key=lambda v: score(v, choose))
            runs.append({"chosen": f"{best[0]} {best[1]}", "measured": score(best, measure),
                         "w0": score(variants[0], measure)})
    return runs


def main(argv=None) -> dict:
    defaults = Settings()
    parser = photo_arguments(__doc__, defaults)
    parser.add_argument("--pairs", type=int, default=300, help="side-by-side pairs of photos of different groups")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=ROOT / "runs" / "garment-context",
                        help="where the model readings are kept (--reuse reads them back)")
    parser.add_argument("--reuse", action="store_true", help="reuse the cached readings of the same photos and pairs")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    settings = defaults.replace(classifier_bundle=args.classifier, detector_bundle=args.detector, device="cpu")
    pipeline = Pipeline.load(settings)
    records = validation_photos(args, pipeline.classifier.taxonomy)
    rng = np.random.default_rng(args.seed)

    cache = args.cache / f"readings-{args.limit or 'all'}-{args.pairs}-{args.seed}.pkl"
    started = time.perf_counter()
    if args.reuse and cache.exists():  # the model readings of an earlier run: only the rule's variants change
        singles, pairs = pickle.loads(cache.read_bytes())
    else:
        singles = []
        for record in tqdm(records, desc="single photos"):
            image = decode(record.image_path.read_bytes(), settings)
            singles.append({"id": record.id, "sender": record.group, "label": record.source_label,
                            "allowed": frozenset(record.allowed["articleType"]), "reading": read(pipeline, image)})
        pairs = []
        by_index = {r.id: r for r in records}
        for _ in tqdm(range(args.pairs), desc="pairs of photos"):
            while True:
                a, b = rng.choice(len(singles), 2, replace=False)
                if not singles[a]["allowed"] & singles[b]["allowed"]:
                    break
            images = [decode(by_index[singles[i]["id"]].image_path.read_bytes(), settings) for i in (a, b)]
            canvas, middle = side_by_side(*images)
            pairs.append({"ids": (singles[a]["id"], singles[b]["id"]), "senders": (singles[a]["sender"], singles[b]["sender"]),
                          "allowed": (singles[a]["allowed"], singles[b]["allowed"]), "middle": middle,
                          "reading": read(pipeline, canvas)})
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_bytes(pickle.dumps((singles, pairs)))
    seconds = time.perf_counter() - started

    variants = [(pooling, w) for pooling in POOLING for w in WEIGHTS if w > 0 or pooling == POOLING[0]]
    by_variant = {f"{pooling} {w}": {"single": single_scores(pipeline, singles, w, pooling),
                                     "pairs": pair_scores(pipeline, pairs, w, pooling)} for pooling, w in variants}

    def score(variant, senders):
        chosen_singles = [s for s in singles if s["sender"] in senders]
        chosen_pairs = [p for p in pairs if set(p["senders"]) <= senders]
        return (single_scores(pipeline, chosen_singles, variant[1], variant[0])["largest_garment_group_accuracy"]
                + pair_scores(pipeline, chosen_pairs, variant[1], variant[0])["garment_group_accuracy"]) / 2

    cross = cross_half(variants, sorted({s["sender"] for s in singles}), score, rng)
    report = {
        "classifier": str(args.classifier), "detector": str(args.detector), "photos": len(singles),
        "pairs": len(pairs), "seconds": round(seconds, 1),
        "photos_read_as": dict(sorted(_count(s["reading"]["kind"] for s in singles).items())),
        "pairs_read_as": dict(sorted(_count(p["reading"]["kind"] for p in pairs).items())),
        "by_variant": by_variant,
        "cross_half": {"runs": cross, "chosen": [c["chosen"] for c in cross],
                       "mean_measured": float(np.mean([c["measured"] for c in cross])),
                       "mean_w0": float(np.mean([c["w0"] for c in cross]))},
    }
    write_report("garment-context", report)
    print(markdown(report))
    return report


def _count(values) -> dict:
    out = defaultdict(int)
    for v in values:
        out[v] += 1
    return out


def markdown(report: dict) -> str:
    lines = [f"{report['photos']} held-out phone photos and {report['pairs']} side-by-side pairs "
             f"({report['seconds']} s); gate: photos {report['photos_read_as']}, pairs {report['pairs_read_as']}", "",
             "| pooling, w | single: garments right / largest right / off-label | pairs: garments right (of n) |",
             "|---:|---:|---:|"]
    for w, row in report["by_variant"].items():
        s, p = row["single"], row["pairs"]
        lines.append(f"| {w} | {s['garment_group_accuracy']:.4f} / {s['largest_garment_group_accuracy']:.4f} / "
                     f"{s['off_label_garments']} | {p['garment_group_accuracy']:.4f} ({p['garments']}) |")
    cross = report["cross_half"]
    lines += ["", f"cross-half: chosen {cross['chosen']}, measured {cross['mean_measured']:.4f} "
                  f"against {cross['mean_w0']:.4f} at w 0"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
