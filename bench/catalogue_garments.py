"""What a user sees for a catalogue thumbnail: does the detector report garment items on a product shot, and
are their tags as right as the whole image's?

    nice -n 15 .venv/bin/python bench/catalogue_garments.py [--limit N] [--detector BUNDLE]

The thumbnails are the classifier bundle's held-out catalogue test split (`split.json`, `test`), each sent
through the serving pipeline as an upload would be (`app.fetch.decode`, `Pipeline.analyse`). A thumbnail
shows one product on a white backdrop, so a garment item, where the detector reports one, is that product
again: reported are how many thumbnails get 0 / 1 / 2+ garment items, and on the thumbnails with one, the
largest garment's articleType and masterCategory against the catalogue's labels beside the whole image's
(the `product` item, which every thumbnail has). Writes bench/results/catalogue-garments-<time>.json and
prints Markdown.
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
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
from bench.photo_garments import box_area, photo_arguments  # noqa: E402
from bench.results import write_report  # noqa: E402
from classification.catalogue import read_catalogue  # noqa: E402

CATALOGUE = ROOT.parent / "shared" / "datasets" / "fashion-product-images-small"
TASKS = ("articleType", "masterCategory")


def main(argv=None) -> dict:
    defaults = Settings()
    parser = photo_arguments(__doc__, defaults, CATALOGUE, "the catalogue (styles.csv + images/)")
    parser.add_argument("--seed", type=int, default=0, help="draws the --limit thumbnails from the test split")
    parser.add_argument("--garment-context-kinds", default=defaults.garment_context_kinds,
                        help="GARMENT_CONTEXT_KINDS: the images whose garments are read with the whole image")
    parser.add_argument("--garment-fragment-kinds", default=defaults.garment_fragment_kinds,
                        help="GARMENT_FRAGMENT_KINDS: the images where a box inside a larger garment's is dropped")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    settings = defaults.replace(classifier_bundle=args.classifier, detector_bundle=args.detector, device="cpu",
                                detector_compute_dtype=args.detector_compute_dtype,
                                garment_context_kinds=args.garment_context_kinds,
                                garment_fragment_kinds=args.garment_fragment_kinds)
    pipeline = Pipeline.load(settings)
    test = json.loads((args.classifier / "split.json").read_text())["test"]
    catalogue = {r.id: r for r in read_catalogue(args.data).records}
    records = [catalogue[i] for i in test if i in catalogue]
    if args.limit and args.limit < len(records):  # a random draw, not the first ids: ids follow the catalogue's order
        rng = np.random.default_rng(args.seed)
        records = [records[i] for i in sorted(rng.choice(len(records), args.limit, replace=False))]

    started = time.perf_counter()
    rows = []
    for record in tqdm(records, desc="thumbnails through the pipeline"):
        image = decode(record.image_path.read_bytes(), settings)
        product, *garments = pipeline.analyse(image, {})
        largest = max(garments, key=lambda g: box_area(g["box"])) if garments else None
        rows.append({"id": record.id, "labels": {t: record[t] for t in TASKS},
                     "product": {t: product["category"][t]["label"] for t in TASKS},
                     "garments": len(garments),
                     "largest": {t: largest["category"][t]["label"] for t in TASKS} | {
                         "detector": largest["detector"]["label"],
                         "area_share": box_area(largest["box"]) / (image.shape[0] * image.shape[1])} if largest else None})
    seconds = time.perf_counter() - started

    with_garments = [r for r in rows if r["largest"]]

    def accuracy(rows_, item, task):
        scored = [r for r in rows_ if r["labels"][task]]
        return float(np.mean([r[item][task] == r["labels"][task] for r in scored])) if scored else None

    report = {
        "classifier": str(args.classifier), "detector": str(args.detector), "detector_version": pipeline.detector.version,
        "garment_context": pipeline.context.name, "garment_fragments": pipeline.fragments.name,
        "thumbnails": len(rows), "seconds": round(seconds, 1),
        "garments_per_thumbnail": dict(sorted(Counter(min(r["garments"], 2) for r in rows).items())),
        "thumbnails_with_garments": len(with_garments),
        "product_accuracy": {t: accuracy(rows, "product", t) for t in TASKS},
        "on_thumbnails_with_garments": {
            "product_accuracy": {t: accuracy(with_garments, "product", t) for t in TASKS},
            "largest_garment_accuracy": {t: accuracy(with_garments, "largest", t) for t in TASKS},
            "largest_garment_area_share_median":
                float(np.median([r["largest"]["area_share"] for r in with_garments])) if with_garments else None,
            "detector_classes": dict(Counter(r["largest"]["detector"] for r in with_garments).most_common())},
    }
    write_report("catalogue-garments", report | {"per_thumbnail": rows})
    print(markdown(report))
    return report


def markdown(report: dict) -> str:
    counts = report["garments_per_thumbnail"]
    lines = [f"{report['thumbnails']} catalogue test thumbnails through the pipeline ({report['seconds']} s), "
             f"detector {report['detector_version']}, garment context {report['garment_context']}, "
             f"garment fragments {report['garment_fragments']}", "", "| figure | value |", "|---|---:|",
             "| thumbnails with 0 / 1 / 2+ garment items | "
             + " / ".join(str(counts.get(n, 0)) for n in range(3)) + " |",
             "| whole image: articleType / masterCategory | "
             + " / ".join(f"{report['product_accuracy'][t]:.4f}" for t in TASKS) + " |"]
    on = report["on_thumbnails_with_garments"]
    if report["thumbnails_with_garments"]:
        lines.append(f"| on the {report['thumbnails_with_garments']} with garments: whole image / largest garment, "
                     "articleType; masterCategory | "
                     + "; ".join(f"{on['product_accuracy'][t]:.4f} / {on['largest_garment_accuracy'][t]:.4f}" for t in TASKS)
                     + " |")
        lines.append(f"| the largest garment's detector class | {on['detector_classes']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
