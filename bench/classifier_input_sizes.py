"""What does the classifier's input size buy? The same bundle's weights run at several input sizes:
accuracy on the three kinds of held-out image and the time to tag 10 crops (a street photo's worth).

    .venv/bin/python bench/classifier_input_sizes.py --bundle models/fashion-lite0 --sizes 96x72 128x96 160x120

The bundle was trained at one size; other sizes show the trade without retraining (a model trained at
a size does at least as well there). Prints a table, writes bench/results/classifier-input-sizes-<time>.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from classification import runtime  # noqa: E402,F401  (torch before TensorFlow)
import numpy as np  # noqa: E402

from bench.results import write_report  # noqa: E402
from classification.catalogue import read_catalogue  # noqa: E402
from classification.evaluate import evaluate_kinds, summary  # noqa: E402
from classification.inference import Classifier  # noqa: E402
from classification.label_map import LabelMap  # noqa: E402
from classification.photo_datasets import read_labelled_photos, read_street_crops  # noqa: E402
from classification.records import from_catalogue  # noqa: E402
from classification.sources import LABEL_MAPS  # noqa: E402

DATA = ROOT.parent / "shared" / "datasets"


def held_out(bundle: Path, taxonomy) -> dict:
    split = json.loads((bundle / "split.json").read_text())
    test = set(split["test"])
    photos, crops = set(split["photo"]["val"]), set(split["street"]["val"])
    return {
        "catalogue": [r for r in from_catalogue(read_catalogue(DATA / "fashion-product-images-small").records) if r.id in test],
        "photo": [r for r in read_labelled_photos(DATA / "clothing-dataset", LabelMap.load(LABEL_MAPS / "clothing-dataset.json"),
                                                  taxonomy) if r.id in photos],
        "street": [r for r in read_street_crops(DATA / "clothing-co-parsing", LabelMap.load(LABEL_MAPS / "clothing-co-parsing.json"),
                                                taxonomy) if r.id in crops],
    }


def crop_latency_ms(classifier: Classifier, repeats: int) -> float:
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 255, (int(rng.integers(80, 400)), int(rng.integers(60, 300)), 3), dtype=np.uint8)
             for _ in range(10)]
    for _ in range(3):
        classifier.predict(crops)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        classifier.predict(crops)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "fashion-lite0")
    parser.add_argument("--sizes", nargs="+", default=["96x72", "128x96", "160x120"], help="HEIGHTxWIDTH")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    records = None
    results = {}
    for size in args.sizes:
        height, width = (int(v) for v in size.split("x"))
        classifier = Classifier(args.bundle, input_size=(height, width))
        records = records or held_out(args.bundle, classifier.taxonomy)
        figures = summary(evaluate_kinds(classifier, records))
        results[size] = {"ten_crops_ms": crop_latency_ms(classifier, args.repeats), **figures}
    print(f"{'input':<10}{'10 crops ms':>12}{'cat. articleType':>18}{'photo group':>13}{'photo master':>14}"
          f"{'street group':>14}{'street master':>15}")
    for size, r in results.items():
        print(f"{size:<10}{r['ten_crops_ms']:>12.1f}{r['catalogue']['articleType']:>18.4f}"
              f"{r['photo']['articleType_group_accuracy']:>13.4f}{r['photo']['masterCategory_accuracy']:>14.4f}"
              f"{r['street']['articleType_group_accuracy']:>14.4f}{r['street']['masterCategory_accuracy']:>15.4f}")
    write_report("classifier-input-sizes", {"bundle": str(args.bundle), "results": results})


if __name__ == "__main__":
    main()
