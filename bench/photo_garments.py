"""What a user sees for a phone photo of one garment: the whole image's tags and the garments found.

    nice -n 15 .venv/bin/python bench/photo_garments.py [--limit N]

The photos are the clothing dataset's validation senders of the classifier bundle (`split.json`,
`photo.val`: senders neither model trained on; the detector never saw a phone photo). Each goes through
the serving pipeline as an upload would (`app.fetch.decode`, `Pipeline.analyse`: detector, garment
crops, the detector prior, the classifier). A photo's label (the clothing dataset's, through its label
map) allows a set of articleTypes; reported:

- the whole image's item (`kind: product`): articleType group accuracy, mean over labels and over photos,
  with 95% bootstrap intervals (the evaluate CLI's phone-photo figure, here through the pipeline, where the
  photo is read with its one garment), and its masterCategory accuracy;
- how many garments the detector reports per photo, and how many of them carry an articleType the
  photo's label does not allow ("off-label": a second garment in the picture, or a wrong one);
- on photos with garments, the largest garment's articleType group accuracy beside the whole image's
  on the same photos;

and a PNG of the photos with the most off-label garments, boxes drawn. Writes
bench/results/photo-garments-<time>.json and prints Markdown. `--prior-kinds all` measures the prior on
every garment (as served before the kind gate decided which); `--garment-context off` reads each garment
on its own (as served before garments of phone photos were read with their photo); `--garment-fragments off`
reports every detection (as served before parts of a garment were dropped: app/fragments.py);
`--product-garment off` reads the whole photo on its own (as served before it was read with its one garment:
classification/product_garment.py).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402  (before TensorFlow)
import torchvision  # noqa: E402,F401
import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from tqdm import tqdm  # noqa: E402

from app.config import Settings  # noqa: E402
from detection.inference import COMPUTE_DTYPES  # noqa: E402
from app.fetch import decode  # noqa: E402
from app.pipeline import Pipeline  # noqa: E402
from bench.results import RESULTS, write_report  # noqa: E402
from classification.evaluate import LABEL_MAPS  # noqa: E402
from classification.intervals import accuracy_interval, mean_over_labels_interval  # noqa: E402
from classification.label_map import LabelMap  # noqa: E402
from classification.photo_datasets import read_labelled_photos  # noqa: E402
from classification.plots import image_grid  # noqa: E402

PHOTOS = ROOT.parent / "shared" / "datasets" / "clothing-dataset"
SHOWN = 12


def box_area(box) -> float:
    x1, y1, x2, y2 = box
    return max(0.0, x2 - x1) * max(0.0, y2 - y1)


def drawn(image: np.ndarray, garments: list[dict], allowed: set[str]) -> np.ndarray:
    """The photo with each garment's box, green when its articleType is one the label allows, red if not."""
    canvas = Image.fromarray(image).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    width = max(2, round(max(canvas.size) / 150))
    for garment in garments:
        colour = (30, 170, 60) if garment["articleType"] in allowed else (220, 40, 40)
        draw.rectangle(garment["box"], outline=colour, width=width)
        draw.text((garment["box"][0] + 3, garment["box"][1] + 2), garment["articleType"], fill=colour)
    return np.asarray(canvas)


def photo_arguments(doc: str, defaults: Settings, data: Path = PHOTOS,
                    data_help: str = "the clothing dataset (images.csv + images/)") -> argparse.ArgumentParser:
    """The options every bench of held-out images through the pipeline takes (phone photos by default)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classifier", type=Path, default=defaults.classifier_bundle)
    parser.add_argument("--detector", type=Path, default=defaults.detector_bundle)
    parser.add_argument("--data", type=Path, default=data, help=data_help)
    parser.add_argument("--limit", type=int, help="only N of the held-out images (a quick look)")
    parser.add_argument("--detector-compute-dtype", choices=COMPUTE_DTYPES, default=defaults.detector_compute_dtype,
                        help="DETECTOR_COMPUTE_DTYPE: the detector backbone's arithmetic on the CPU")
    return parser


def validation_photos(args: argparse.Namespace, taxonomy) -> list:
    """The phone photos of the classifier bundle's validation senders (the first --limit of them)."""
    val = set(json.loads((args.classifier / "split.json").read_text())["photo"]["val"])
    records = [r for r in read_labelled_photos(args.data, LabelMap.load(LABEL_MAPS / "clothing-dataset.json"), taxonomy)
               if r.id in val]
    return records[:args.limit] if args.limit else records


def main(argv=None) -> dict:
    defaults = Settings()
    parser = photo_arguments(__doc__, defaults)
    parser.add_argument("--prior-kinds", default=defaults.garment_detector_prior_kinds,
                        help="GARMENT_DETECTOR_PRIOR_KINDS: the garments the detector's class constrains (all: every one)")
    parser.add_argument("--garment-context", default=defaults.garment_context,
                        help="GARMENT_CONTEXT: how a garment's category pools with its whole photo's (off: its own)")
    parser.add_argument("--detector-score-threshold", type=float, default=defaults.detector_score_threshold,
                        help="DETECTOR_SCORE_THRESHOLD: the least score a detection is reported with (default: the bundle's)")
    parser.add_argument("--garment-fragments", default=defaults.garment_fragments,
                        help="GARMENT_FRAGMENTS: the share of a box inside a larger garment's that makes it a part "
                             "of that garment, dropped (off: every detection reported)")
    parser.add_argument("--product-garment", default=defaults.product_garment,
                        help="PRODUCT_GARMENT: how the whole photo's category pools with its one garment's (off: its own)")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    settings = defaults.replace(classifier_bundle=args.classifier, detector_bundle=args.detector, device="cpu",
                                product_garment=args.product_garment,
                                garment_detector_prior_kinds=args.prior_kinds, garment_context=args.garment_context,
                                garment_fragments=args.garment_fragments,
                                detector_score_threshold=args.detector_score_threshold,
                                detector_compute_dtype=args.detector_compute_dtype)
    pipeline = Pipeline.load(settings)
    records = validation_photos(args, pipeline.classifier.taxonomy)

    started = time.perf_counter()
    photos = []
    for record in tqdm(records, desc="photos through the pipeline"):
        image = decode(record.image_path.read_bytes(), settings)
        items = pipeline.analyse(image, {})
        allowed = set(record.allowed["articleType"])
        garments = [{"articleType": i["category"]["articleType"]["label"], "detector": i["detector"]["label"],
                     "score": i["detector"]["score"], "box": i["box"],
                     "constrained": "detector:" in (i["category"]["constrained_by"] or ""),  # not "image"
                     "area_share": box_area(i["box"]) / (image.shape[0] * image.shape[1])} for i in items[1:]]
        # how the kind gate reads the whole photo (the detector prior holds for garments of street photos)
        kinds = pipeline.classifier.image_kinds(pipeline.classifier.embedding_inputs([image])[0])
        photos.append({"id": record.id, "label": record.source_label, "allowed": sorted(allowed),
                       "product": items[0]["category"]["articleType"]["label"],
                       "product_master_ok": items[0]["category"]["masterCategory"]["label"] in record.allowed["masterCategory"],
                       "product_read_with_garment": items[0]["category"]["constrained_by"] == "garment",
                       "garments": garments,
                       "read_as": kinds[0] if kinds else None})
    seconds = time.perf_counter() - started

    def ok(photo, article):
        return article in photo["allowed"]

    by_label = defaultdict(list)
    for photo in photos:
        by_label[photo["label"]].append(photo)
    with_garments = [p for p in photos if p["garments"]]
    largest = {p["id"]: max(p["garments"], key=lambda g: g["area_share"]) for p in with_garments}
    garments = [(p, g) for p in photos for g in p["garments"]]
    off_label = [(p, g) for p, g in garments if not ok(p, g["articleType"])]
    product_hits = np.array([ok(p, p["product"]) for p in photos], np.float64)
    report = {
        "classifier": str(args.classifier), "detector": str(args.detector), "detector_version": pipeline.detector.version,
        "photos": len(photos),
        "detector_prior": pipeline.prior.name, "garment_context": pipeline.context.name,
        "garment_fragments": pipeline.fragments.name, "product_garment": pipeline.product_garment.name,
        "detector_score_threshold": float(pipeline.detector.model.roi_heads.score_thresh),
        "labels": len(by_label), "seconds": round(seconds, 1),
        "whole_photos_read_as": dict(Counter(p["read_as"] for p in photos).most_common()),
        "product_group_accuracy_mean_over_labels": float(np.mean(
            [np.mean([ok(p, p["product"]) for p in rows]) for rows in by_label.values()])),
        "product_group_accuracy_mean_over_labels_interval_95":
            mean_over_labels_interval(product_hits, [p["label"] for p in photos]),
        "product_group_accuracy": float(product_hits.mean()),
        "product_group_accuracy_interval_95": accuracy_interval(product_hits),
        "product_masterCategory_accuracy": float(np.mean([p["product_master_ok"] for p in photos])),
        "products_read_with_their_garment": sum(p["product_read_with_garment"] for p in photos),
        "garments_per_photo": dict(sorted(Counter(min(len(p["garments"]), 3) for p in photos).items())),
        "garments": len(garments),
        "constrained_by_the_detector_class": sum(g["constrained"] for _, g in garments),
        "off_label_garments": len(off_label),
        "off_label_constrained": sum(g["constrained"] for _, g in off_label),
        "photos_with_an_off_label_garment": sum(any(not ok(p, g["articleType"]) for g in p["garments"]) for p in photos),
        "off_label_by_detector_class": dict(Counter(g["detector"] for _, g in off_label).most_common()),
        "off_label_articleTypes": dict(Counter(g["articleType"] for _, g in off_label).most_common(15)),
        "photos_with_garments": len(with_garments),
        "on_photos_with_garments": {
            "product_group_accuracy": float(np.mean([ok(p, p["product"]) for p in with_garments])) if with_garments else None,
            "largest_garment_group_accuracy":
                float(np.mean([ok(p, largest[p["id"]]["articleType"]) for p in with_garments])) if with_garments else None,
            "largest_garment_area_share_median":
                float(np.median([largest[p["id"]]["area_share"] for p in with_garments])) if with_garments else None},
        "per_label": {label: {"photos": len(rows),
                              "product_group_accuracy": float(np.mean([ok(p, p["product"]) for p in rows])),
                              "garments": sum(len(p["garments"]) for p in rows),
                              "off_label_garments": sum(not ok(p, g["articleType"]) for p in rows for g in p["garments"])}
                      for label, rows in sorted(by_label.items(), key=lambda kv: -len(kv[1]))},
    }
    path = write_report("photo-garments", report | {"per_photo": photos})
    worst = sorted(photos, key=lambda p: -sum(not ok(p, g["articleType"]) for g in p["garments"]))[:SHOWN]
    worst = [p for p in worst if any(not ok(p, g["articleType"]) for g in p["garments"])]
    if worst:
        by_id = {r.id: r for r in records}
        image_grid([drawn(decode(by_id[p["id"]].image_path.read_bytes(), settings), p["garments"], set(p["allowed"]))
                    for p in worst],
                   [f"{p['label']}: whole image {p['product']}" for p in worst],
                   "Phone photos with the most off-label garments (red: an articleType the label does not allow)",
                   RESULTS / (path.stem + ".png"))
    print(markdown(report))
    return report


def markdown(report: dict) -> str:
    with_garments = report["on_photos_with_garments"]
    lines = [f"{report['photos']} phone photos of unseen senders through the pipeline ({report['seconds']} s), "
             f"detector prior {report['detector_prior']}, garment context {report.get('garment_context', 'off')}, "
             f"garment fragments {report.get('garment_fragments', 'off')}, "
             f"product garment {report.get('product_garment', 'off')}", "",
             "| figure | value |", "|---|---:|",
             f"| whole image: articleType group, mean over {report['labels']} labels / over photos | "
             f"{report['product_group_accuracy_mean_over_labels']:.4f} / {report['product_group_accuracy']:.4f} |",
             f"| the same, 95% intervals | {report['product_group_accuracy_mean_over_labels_interval_95']} / "
             f"{report['product_group_accuracy_interval_95']} |",
             f"| whole image: masterCategory / read with its one garment | "
             f"{report['product_masterCategory_accuracy']:.4f} / {report['products_read_with_their_garment']} |",
             "| photos with 0 / 1 / 2 / 3+ garments | "
             + " / ".join(str(report["garments_per_photo"].get(n, 0)) for n in range(4)) + " |",
             f"| garments / constrained by the detector's class | {report['garments']} / "
             f"{report['constrained_by_the_detector_class']} |",
             f"| off-label garments (an articleType the label does not allow) / of them constrained | "
             f"{report['off_label_garments']} / {report['off_label_constrained']} |",
             f"| photos with an off-label garment | {report['photos_with_an_off_label_garment']} |",
             f"| the kind gate reads the whole photos as | {report['whole_photos_read_as']} |"]
    if report["photos_with_garments"]:
        lines.append(f"| on the {report['photos_with_garments']} photos with garments: whole image / largest garment "
                     f"group accuracy | {with_garments['product_group_accuracy']:.4f} / "
                     f"{with_garments['largest_garment_group_accuracy']:.4f} |")
    lines += ["", "off-label garments by detector class: " + ", ".join(
        f"{k} {v}" for k, v in report["off_label_by_detector_class"].items()),
        "their articleTypes: " + ", ".join(f"{k} {v}" for k, v in report["off_label_articleTypes"].items())]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
