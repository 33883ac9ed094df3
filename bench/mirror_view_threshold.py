"""The mirror view only where the model is unsure: its accuracy and cost at a few confidence thresholds.

    nice -n 15 .venv/bin/python bench/mirror_view_threshold.py [--bundle models/fashion-lite0] \
        [--catalogue ../shared/datasets/fashion-product-images-small] \
        [--photos ../shared/datasets/clothing-dataset] [--street ../shared/datasets/clothing-co-parsing]

Each held-out image of the three kinds (as `classification.evaluate` selects them) goes through the
bundle once as it is and once mirrored; every threshold then re-scores the same outputs: an image whose
first view's top articleType probability is under the threshold gets the two views' average, the others
keep the first view: what `Classifier(flip_average=<threshold>)` serves (a check runs it on a few images
of each kind and asserts the same outputs; the model alone, without a neighbour vote). Threshold 0 is the one view, 1 the mirror view on
every image. Reports the 13 figures `classification.compare_bundles` weighs, their sum against the one
view, and the share of images that paid for a second view (the classify stage's extra cost). Writes
bench/results/mirror-view-threshold-<time>.json and a PNG of the trade beside it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402,F401  (before TensorFlow)
import numpy as np  # noqa: E402

from bench.results import RESULTS, write_report  # noqa: E402
from classification.compare_bundles import FIGURES  # noqa: E402
from classification.data import load_images  # noqa: E402
from classification.evaluate import (evaluate_allowed_sets, evaluate_catalogue, held_out_records,  # noqa: E402
                                     summary)
from classification.inference import Classifier, needs_mirror_view  # noqa: E402
from classification.preprocess import preprocess_batch  # noqa: E402

DATA = ROOT.parent / "shared" / "datasets"
THRESHOLDS = (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
CHECKED_IMAGES, CHECKED_THRESHOLD = 48, 0.8


class FixedOutputs:
    """Stands in for the classifier in the evaluate functions: the given outputs, the bundle's decoding."""

    def __init__(self, classifier: Classifier, probs: dict[str, np.ndarray]):
        self.taxonomy, self.describe, self._probs = classifier.taxonomy, classifier.describe, probs

    def predict_proba(self, images) -> dict[str, np.ndarray]:
        return self._probs


def mixed(one: dict[str, np.ndarray], mirror: dict[str, np.ndarray], second: np.ndarray) -> dict[str, np.ndarray]:
    return {task: np.where(second[:, None], (one[task] + mirror[task]) / 2, one[task]) for task in one}


def check_served_the_same(bundle: Path, batch: np.ndarray, one: dict, mirror: dict) -> None:
    """The re-scoring below must be what the classifier serves at a threshold: run it and compare."""
    served = Classifier(bundle, batch_size=16, flip_average=CHECKED_THRESHOLD, neighbour_vote=False,
                        feature_heads=False).predict_proba_preprocessed(batch)
    n = len(batch)
    second = needs_mirror_view(one["articleType"][:n], CHECKED_THRESHOLD)
    expected = mixed({t: p[:n] for t, p in one.items()}, {t: p[:n] for t, p in mirror.items()}, second)
    for task, probs in served.items():
        np.testing.assert_allclose(probs, expected[task], atol=1e-4, err_msg=task)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "fashion-lite0")
    parser.add_argument("--catalogue", type=Path, default=DATA / "fashion-product-images-small")
    parser.add_argument("--photos", type=Path, default=DATA / "clothing-dataset")
    parser.add_argument("--street", type=Path, default=DATA / "clothing-co-parsing")
    parser.add_argument("--thresholds", type=float, nargs="+", default=THRESHOLDS)
    args = parser.parse_args(argv)

    classifier = Classifier(args.bundle, batch_size=128, flip_average=False, neighbour_vote=False,
                            feature_heads=False)
    records = held_out_records(args.bundle, args.catalogue, args.photos, args.street)
    views = {}
    for kind, kind_records in records.items():
        images = load_images(kind_records, desc=f"{kind}: decoding")
        batch = preprocess_batch(images, classifier.input_size)
        one = classifier.predict_proba_preprocessed(batch)
        mirror = classifier.predict_proba_preprocessed(np.ascontiguousarray(batch[:, :, ::-1]))
        views[kind] = (images, one, mirror)
        print(f"{kind}: {len(kind_records)} images scored in both views")
        check_served_the_same(args.bundle, batch[:CHECKED_IMAGES], one, mirror)

    rows = []
    for threshold in args.thresholds:
        reports, shares = {}, {}
        for kind, (images, one, mirror) in views.items():
            second = needs_mirror_view(one["articleType"], threshold)  # 0: none, 1: every image
            shares[kind] = float(second.mean())
            stand_in = FixedOutputs(classifier, mixed(one, mirror, second))
            reports[kind] = (evaluate_catalogue(stand_in, records[kind], images) if kind == "catalogue"
                             else evaluate_allowed_sets(stand_in, records[kind], kind, images))
        figures = summary(reports)
        rows.append({"threshold": threshold, "second_view_share": shares,
                     "figures": {label: figures[kind][key] for kind, key, label in FIGURES if kind in figures}})
    base = rows[0]["figures"] if args.thresholds[0] == 0 else None
    for row in rows:
        if base is not None:
            row["delta_sum"] = round(sum(row["figures"][k] - base[k] for k in base), 4)
            row["up_or_equal"] = sum(row["figures"][k] - base[k] > -5e-5 for k in base)

    print(f"| threshold | second view: {' / '.join(views)} | sum against one view | up or equal | "
          + " | ".join(rows[0]["figures"]) + " |")
    for row in rows:
        print(f"| {row['threshold']:g} | {' / '.join(f'{s:.2f}' for s in row['second_view_share'].values())} | "
              f"{row.get('delta_sum', float('nan')):+.4f} | {row.get('up_or_equal', '')} | "
              + " | ".join(f"{v:.4f}" for v in row["figures"].values()) + " |")
    report = {"bundle": str(args.bundle), "version": classifier.manifest.get("version"),
              "confidence": "the first view's top articleType probability",
              "images": {k: len(v) for k, v in records.items()}, "rows": rows}
    path = write_report("mirror-view-threshold", report)
    if base is not None:
        trade_png(rows, list(views), path.with_suffix(".png"))
    return report


def trade_png(rows: list[dict], kinds: list[str], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for kind in kinds:
        ax.plot([r["threshold"] for r in rows], [r["second_view_share"][kind] for r in rows], marker="o",
                label=f"second view share: {kind}")
    ax.set_xlabel("confidence threshold (mirror view under it)")
    ax.set_ylabel("share of images given a second view")
    twin = ax.twinx()
    twin.plot([r["threshold"] for r in rows], [r["delta_sum"] for r in rows], color="black", marker="s",
              label="sum of the 13 figures against one view")
    twin.set_ylabel("sum of figure differences")
    fig.legend(loc="upper left", bbox_to_anchor=(0.14, 0.93), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"written {path}")


if __name__ == "__main__":
    main()
