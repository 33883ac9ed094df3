"""How consistently the catalogue labels thumbnails that look alike, beside how the served classifier does on
them: what the catalogue articleType figure can reach.

    nice -n 15 .venv/bin/python bench/catalogue_label_consistency.py [--bundle models/fashion-lite0]

Each catalogue test thumbnail (the bundle's split.json) is matched to the training thumbnail nearest it
at the catalogue's own resolution (RGB, 30x40, mean-centred, cosine): near-duplicates are the same
product line shot the same way, or garments the thumbnails cannot tell apart. Per band of that cosine:
how many test thumbnails, how often the twin's label is the test thumbnail's (`twin agrees`: what
copying the nearest training label scores, a measure of the labels' own consistency where the pixels
hardly differ), the served classifier's accuracy (mirror view and neighbour vote as served), and how
many of its mistakes name exactly the twin's label. Also the articleType pairs behind the mistakes a
twin labelled differently. Writes bench/results/catalogue-label-consistency-<time>.json.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from classification import runtime  # noqa: E402,F401  (torch before TensorFlow, the backend first)

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from tqdm import tqdm  # noqa: E402

from bench.results import write_report  # noqa: E402
from classification.catalogue import read_catalogue  # noqa: E402
from classification.inference import Classifier  # noqa: E402

BANDS = (0.99, 0.98, 0.95, 0.90, -1.0)  # lower edges, highest first
TASKS = ("articleType", "gender", "subCategory")


def pixels(paths) -> np.ndarray:
    """Unit vectors of the thumbnails' mean-centred 30x40 RGB pixels."""
    rows = []
    for path in tqdm(paths, desc="reading thumbnails", unit="image"):
        with Image.open(path) as image:
            small = np.asarray(image.convert("RGB").resize((30, 40), Image.BILINEAR), np.float32).ravel()
        small -= small.mean()
        rows.append(small / (np.linalg.norm(small) + 1e-6))
    return np.stack(rows)


def nearest(queries: np.ndarray, gallery: np.ndarray, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    index, cosine = [], []
    for start in range(0, len(queries), chunk):
        scores = queries[start:start + chunk] @ gallery.T
        index.append(scores.argmax(axis=1))
        cosine.append(scores.max(axis=1))
    return np.concatenate(index), np.concatenate(cosine)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "fashion-lite0")
    parser.add_argument("--catalogue", type=Path, default=ROOT.parent / "shared" / "datasets" / "fashion-product-images-small")
    args = parser.parse_args()
    split = json.loads((args.bundle / "split.json").read_text())
    records = {r.id: r for r in read_catalogue(args.catalogue).records}
    train = [records[i] for i in split["train"] if i in records]
    test = [records[i] for i in split["test"] if i in records]
    twin, cosine = nearest(pixels([r.image_path for r in test]), pixels([r.image_path for r in train]))

    classifier = Classifier(args.bundle)
    predicted = []
    for start in tqdm(range(0, len(test), 256), desc="tagging test thumbnails", unit="batch"):
        images = [np.asarray(Image.open(r.image_path).convert("RGB")) for r in test[start:start + 256]]
        predicted += classifier.predict(images)

    report = {"bundle": f"{classifier.manifest['name']}:{classifier.manifest['version']}", "test": len(test),
              "train": len(train), "bands": {}, "mistakes a differently labelled twin explains": {}}
    upper = 1.01
    for lower in BANDS:
        inside = [i for i in range(len(test)) if lower <= cosine[i] < upper]
        band = {"thumbnails": len(inside)}
        for task in TASKS:
            labelled = [i for i in inside if test[i][task]]
            truth = [test[i][task] for i in labelled]
            twins = [train[twin[i]][task] for i in labelled]
            served = [predicted[i][task]["label"] for i in labelled]
            wrong = [k for k in range(len(labelled)) if served[k] != truth[k]]
            band[task] = {"twin agrees": round(float(np.mean([t == w for t, w in zip(truth, twins)])), 4) if labelled else None,
                          "served accuracy": round(float(np.mean([t == s for t, s in zip(truth, served)])), 4) if labelled else None,
                          "served mistakes": len(wrong),
                          "of them naming the twin's label": sum(served[k] == twins[k] for k in wrong)}
        report["bands"][f"cosine {lower if lower > -1 else 'below 0.90'}" + (f"-{upper:.2f}" if lower > -1 else "")] = band
        upper = lower
    pairs = Counter((test[i]["articleType"], predicted[i]["articleType"]["label"]) for i in range(len(test))
                    if predicted[i]["articleType"]["label"] != test[i]["articleType"]
                    and predicted[i]["articleType"]["label"] == train[twin[i]]["articleType"])
    report["mistakes a differently labelled twin explains"] = {f"{t} tagged {p}": n for (t, p), n in pairs.most_common(12)}
    print(json.dumps(report, indent=1))
    write_report("catalogue-label-consistency", report)


if __name__ == "__main__":
    main()
