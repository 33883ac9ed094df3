"""Would a per-class bias on the served probabilities buy accuracy? Measured, not kept.

    nice -n 15 .venv/bin/python bench/class_bias_probe.py [--bundle models/fashion-lite0] [--cache-dir runs/class-bias]

The served classifier still misreads some catalogue classes nearly always (Flats 0.07 recall, Kurtis
0.09, Tunics 0.05: evaluation/report.md), as if its training mix (catalogue thumbnails beside phone
photos and street crops whose labels allow whole groups) had shifted its class priors. The standard
post-hoc remedy is a bias per class on the log-probabilities, p'_c ~ p_c exp(b_c), fitted by maximum
likelihood (L2-regularised by lambda) on labelled images the model never trained on: here the
catalogue **validation** split, task by task. lambda is chosen per task by 5-fold cross-validation on
that split alone (top-1 accuracy; a task whose best lambda gains nothing keeps no bias), and a few
fixed settings are shown beside it. Every variant is then scored as `classification.evaluate` scores
the served bundle (the same decoding and figures): the catalogue test split, the validation senders'
phone photos and the held-out street crops, none of which chose anything. The report also lists what the
served tags get wrong on the catalogue test split (articleType confusions, gender errors by category).

The served probabilities (mirror view and neighbour vote, as the bundle serves) of the four held-out
sets are computed once (6 min on the 2 cores) and cached in --cache-dir. Writes
bench/results/class-bias-<time>.json.
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
from scipy.optimize import minimize  # noqa: E402

from bench.results import write_report  # noqa: E402
from classification.catalogue import read_catalogue  # noqa: E402
from classification.data import load_images  # noqa: E402
from classification.evaluate import (allowed_set_scores, decoded_indices, held_out_records,  # noqa: E402
                                     true_indices)
from classification.inference import Classifier  # noqa: E402
from classification.metrics import PHOTO_KIND_FIGURES  # noqa: E402
from classification.records import from_catalogue  # noqa: E402
from classification.taxonomy import TASKS  # noqa: E402

DATASETS = ROOT.parent / "shared" / "datasets"
LAMBDAS = (1e-4, 1e-3, 1e-2, 1e-1)
FOLDS = 5


def served_probabilities(classifier: Classifier, records: dict, cache_dir: Path) -> dict:
    """kind -> task -> (N, classes) float64: the served probabilities of each set, cached by image ids."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for kind, kind_records in records.items():
        path = cache_dir / f"{classifier.manifest['version']}-{kind}.npz"
        ids = np.asarray([r.id for r in kind_records])
        if not path.is_file():
            probs = classifier.predict_proba(load_images(kind_records, desc=f"decoding {kind}"))
            np.savez(path, ids=ids, **probs)
        with np.load(path) as cached:
            if not np.array_equal(cached["ids"], ids):
                raise SystemExit(f"{path} holds other images: delete it")
            out[kind] = {task: cached[task].astype(np.float64) for task in TASKS}
    return out


def with_biases(probs: dict, biases: dict) -> dict:
    """p_c exp(b_c), renormalised, task by task (a task without a bias as it comes)."""
    out = {}
    for task, p in probs.items():
        q = p * np.exp(biases[task]) if task in biases else p
        out[task] = (q / q.sum(axis=1, keepdims=True)).astype(np.float32)
    return out


def fit_bias(probs: np.ndarray, labels: np.ndarray, lam: float) -> np.ndarray:
    """The bias vector minimising the mean negative log-likelihood of `labels` + lam x |b|^2 (convex)."""
    log_p = np.log(probs + 1e-9)
    rows = np.arange(len(labels))

    def loss(b):
        z = log_p + b
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        total = e.sum(axis=1)
        grad = (e / total[:, None]).mean(axis=0)
        np.add.at(grad, labels, -1.0 / len(labels))
        return -(z[rows, labels] - np.log(total)).mean() + lam * b @ b, grad + 2 * lam * b

    return minimize(loss, np.zeros(probs.shape[1]), jac=True, method="L-BFGS-B").x


def cross_validated_gain(probs: np.ndarray, labels: np.ndarray, lam: float, folds: np.ndarray) -> float:
    """Top-1 accuracy gained by the bias on held-out folds of the validation split (summed over folds)."""
    hits = 0
    for fold in range(FOLDS):
        fit, held = folds != fold, folds == fold
        b = fit_bias(probs[fit], labels[fit], lam)
        hits += int(((np.log(probs[held] + 1e-9) + b).argmax(axis=1) == labels[held]).sum())
        hits -= int((probs[held].argmax(axis=1) == labels[held]).sum())
    return hits / len(labels)


def figures(classifier: Classifier, records: dict, probs: dict, biases: dict) -> dict:
    """The figures `evaluate` reports, for every held-out set, with the biases applied."""
    out = {}
    for kind, kind_records in records.items():
        described = classifier.describe(with_biases(probs[kind], biases))
        if kind.startswith("catalogue"):
            out[kind] = {}
            for task in TASKS:
                true, pred = true_indices(kind_records, classifier, task), decoded_indices(classifier, described, task)
                known = true != -1
                out[kind][task] = round(float((true[known] == pred[known]).mean()), 4)
        else:
            report, _, _ = allowed_set_scores([r.allowed for r in kind_records], [r.source_label for r in kind_records],
                                              described)
            out[kind] = {name: round(report[name], 4) for name in PHOTO_KIND_FIGURES}
    return out


def served_mistakes(classifier: Classifier, records: list, probs: dict) -> dict:
    """What the served tags get wrong on the catalogue test split: the commonest articleType confusions
    (true -> tagged) with each class's test count, and the gender errors by masterCategory and by pair."""
    described = classifier.describe(with_biases(probs, {}))
    names = {task: classifier.taxonomy.labels[task] for task in ("articleType", "gender")}
    out = {}
    for task in ("articleType", "gender"):
        true, pred = true_indices(records, classifier, task), decoded_indices(classifier, described, task)
        wrong = np.flatnonzero((true >= 0) & (true != pred))
        pairs = Counter(f"{names[task][true[i]]} -> {names[task][pred[i]]}" for i in wrong)
        out[task] = {"errors": len(wrong), "test_images_per_class": dict(Counter(names[task][t] for t in true if t >= 0)),
                     "confusions": dict(pairs.most_common(15))}
        if task == "gender":
            out[task]["by_masterCategory"] = dict(Counter(records[i].label("masterCategory") for i in wrong).most_common())
            out[task]["by_articleType"] = dict(Counter(records[i].label("articleType") for i in wrong).most_common(10))
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "fashion-lite0")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "runs" / "class-bias")
    args = parser.parse_args(argv)
    records = held_out_records(args.bundle, DATASETS / "fashion-product-images-small", DATASETS / "clothing-dataset",
                               DATASETS / "clothing-co-parsing")
    validation_ids = set(json.loads((args.bundle / "split.json").read_text())["val"])
    records["catalogue_validation"] = [r for r in from_catalogue(read_catalogue(DATASETS / "fashion-product-images-small").records)
                                       if r.id in validation_ids]
    classifier = Classifier(args.bundle, batch_size=128)
    probs = served_probabilities(classifier, records, args.cache_dir)

    folds = np.random.default_rng(1234).integers(0, FOLDS, len(records["catalogue_validation"]))
    validation, cross_validation, chosen = {}, {}, {}
    for task in TASKS:
        true = true_indices(records["catalogue_validation"], classifier, task)
        known = true >= 0
        validation[task] = (probs["catalogue_validation"][task][known], true[known])
        cross_validation[task] = {lam: round(cross_validated_gain(*validation[task], lam, folds[known]), 4) for lam in LAMBDAS}
        best = max(LAMBDAS, key=cross_validation[task].get)
        if cross_validation[task][best] > 0:
            chosen[task] = best
        print(f"{task}: top-1 gained on held-out folds by lambda {cross_validation[task]}", flush=True)

    variants = {"served (no bias)": {}, "chosen by cross-validation": chosen,
                "articleType only, lambda 1e-3": {"articleType": 1e-3},
                "every task, lambda 1e-3": {task: 1e-3 for task in TASKS},
                "every task, lambda 1e-2": {task: 1e-2 for task in TASKS}}
    served = None
    results = {}
    for name, lambdas in variants.items():
        biases = {task: fit_bias(*validation[task], lam) for task, lam in lambdas.items()}
        scored = figures(classifier, records, probs, biases)
        thirteen = sum(v for kind in ("catalogue", "photo", "street") for v in scored[kind].values())
        served = thirteen if served is None else served
        results[name] = {"lambdas": lambdas, "figures": scored, "sum_of_13_against_served": round(thirteen - served, 4)}
        print(f"{name}: sum of the 13 held-out figures {thirteen - served:+.4f}; catalogue test articleType "
              f"{scored['catalogue']['articleType']}, gender {scored['catalogue']['gender']}; photos "
              f"{scored['photo']['articleType_group_accuracy']}; street {scored['street']['articleType_group_accuracy']}",
              flush=True)
    return {"path": str(write_report("class-bias", {
        "bundle": classifier.manifest["version"], "served_as": classifier.versions["category"],
        "images": {kind: len(r) for kind, r in records.items()}, "folds": FOLDS,
        "cross_validated_top1_gain": cross_validation, "variants": results,
        "served_mistakes": served_mistakes(classifier, records["catalogue"], probs["catalogue"])}))}


if __name__ == "__main__":
    main()
