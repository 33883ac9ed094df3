"""Probe: a logistic-regression gender head on the served bundle's pooled features, mixed into the served
gender probabilities.

    nice -n 15 .venv/bin/python bench/gender_head_probe.py [--run-dir runs/knn]

Catalogue gender is the target the served tags miss by least (0.913 of 0.92). The network's gender head
was trained jointly with every other task on augmented images; a head fitted to convergence on the
pooled features of the un-augmented training thumbnails (the mirror view, as served) may read gender
better. The catalogue's pooled features and probabilities come from the feature cache of
classification.build_neighbour_vote (`--run-dir`, filled on first use: about 18 min for the catalogue's
40,026 thumbnails on the 2 cores). The served probabilities are the model's mixed with its neighbour vote,
as served; the candidate is (1 - w) x served + w x the logistic head. C (inverse regularisation) and w
are chosen on the catalogue **validation** split by gender accuracy; the test split chose nothing.
Writes bench/results/gender-head-probe-<time>.json.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from classification import runtime  # noqa: E402,F401  (torch before TensorFlow, the backend first)

import numpy as np  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from bench.results import write_report  # noqa: E402
from classification.evaluate import true_indices  # noqa: E402
from classification.inference import Classifier  # noqa: E402
from classification.neighbour_vote import project  # noqa: E402
from classification.train_embedding_head import bundle_features  # noqa: E402

DATA = ROOT.parent / "shared" / "datasets"
C_GRID = (0.01, 0.1, 1.0)
W_GRID = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "fashion-lite0")
    parser.add_argument("--catalogue", type=Path, default=DATA / "fashion-product-images-small")
    parser.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "knn")
    args = parser.parse_args(argv)
    # The feature cache's arguments (catalogue only: gender is a catalogue label).
    args.photos = args.street = args.image_cache = None
    args.photo_label_map = args.street_label_map = None
    args.max_side = 160
    _, classifier, records, features, probs = bundle_features(args)
    served = Classifier(args.bundle)
    vote = served.neighbour_vote

    def served_gender(part: str) -> np.ndarray:
        key = ("catalogue", part)
        return vote.mix(probs[key], project(served.embedding_head, features[key]))["gender"]

    truth = {part: true_indices(records["catalogue", part], classifier, "gender") for part in ("train", "val", "test")}
    labelled = truth["train"] >= 0
    scaler = StandardScaler().fit(features["catalogue", "train"][labelled])
    scaled = {part: scaler.transform(features["catalogue", part]) for part in ("train", "val", "test")}
    classes = classifier.taxonomy.num_classes("gender")

    def accuracy(part: str, p: np.ndarray) -> float:
        known = truth[part] != -1
        return round(float((p.argmax(axis=1) == truth[part])[known].mean()), 4)

    base = {part: served_gender(part) for part in ("val", "test")}
    rows = []
    for c in C_GRID:
        head = LogisticRegression(C=c, max_iter=2000).fit(scaled["train"][labelled], truth["train"][labelled])
        fitted = {}
        for part in ("val", "test"):
            p = np.zeros((len(scaled[part]), classes), np.float32)
            p[:, head.classes_] = head.predict_proba(scaled[part])
            fitted[part] = p
        for w in W_GRID:
            mixed = {part: (1 - w) * base[part] + w * fitted[part] for part in ("val", "test")}
            rows.append({"C": c, "w": w, "val": accuracy("val", mixed["val"]), "test": accuracy("test", mixed["test"])})
            print(rows[-1], flush=True)
    chosen = max(rows, key=lambda r: (r["val"], -r["w"]))  # ties: the smaller change
    report = {"bundle": str(args.bundle), "version": classifier.manifest.get("version"), "vote": vote.version,
              "served": {part: accuracy(part, base[part]) for part in ("val", "test")},
              "chosen_on": "catalogue validation gender accuracy (ties: the smaller w)", "chosen": chosen,
              "rows": rows}
    print({k: v for k, v in report.items() if k != "rows"})
    write_report("gender-head-probe", report)
    return report


if __name__ == "__main__":
    main()
