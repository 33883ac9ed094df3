"""Fit a classifier bundle's feature heads (classification.feature_heads) and choose their C and weight.

    python -m classification.fit_feature_heads --bundle models/fashion-lite0 \\
        --catalogue ../shared/datasets/fashion-product-images-small --run-dir runs/knn [--tasks gender] [--write]
        [--photos ../shared/datasets/clothing-dataset --street ../shared/datasets/clothing-co-parsing]

Each task's logistic regression is fitted on the pooled features of the bundle's catalogue training
split (the feature cache shared with classification.build_neighbour_vote: filled on first use), for each
C of the grid; the served probabilities (the model's with the bundle's neighbour vote, as served) are mixed
with it at each weight of the grid, and the (C, weight) with the best accuracy of that task on the
catalogue **validation** split is kept (ties: the smaller weight, the smaller C). The test split chose
nothing and is reported before and after. `--write` stores the heads in the bundle and this report in
its manifest (a weight of 0 chosen: no head for that task).

The tasks in `--gated` (the category levels) get gated heads (classification.feature_heads): their weight
is scaled by a kind gate's catalogue probability, the gate fitted on the training features of the kinds
given (the catalogue and `--photos` and/or `--street`, which a gated task needs). The report says how
the gate reads each kind's held-out images.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from typing import Sequence

from . import runtime  # noqa: F401  (import order and backend first)

import numpy as np  # noqa: E402

from .evaluate import true_indices  # noqa: E402
from .feature_heads import FeatureHeads, fit_gate, fit_head  # noqa: E402
from .inference import Classifier  # noqa: E402
from .train_embedding_head import add_data_arguments, bundle_features  # noqa: E402

C_GRID = (0.01, 0.1, 1.0)
WEIGHT_GRID = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(parser)
    parser.add_argument("--tasks", default="gender", help="comma-separated catalogue tasks to fit a head for")
    parser.add_argument("--gated", default="masterCategory,subCategory,articleType",
                        help="comma-separated tasks whose heads are gated by the kind gate (fitted when one is asked for)")
    parser.add_argument("--write", action="store_true", help="store the heads and their figures in the bundle")
    return parser.parse_args(argv)


def accuracy(truth: np.ndarray, probs: np.ndarray) -> float:
    known = truth != -1
    return round(float((probs.argmax(axis=1) == truth)[known].mean()), 4) if known.any() else float("nan")


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.time()
    manifest, classifier, records, features, probs = bundle_features(args)
    served = Classifier(args.bundle, feature_heads=False)  # the vote as served, without any heads already there
    parts = ("train", "val", "test")
    served_probs = {part: served.voted(features["catalogue", part], probs["catalogue", part]) for part in ("val", "test")}
    heads, report = [], {"chosen_on": "the task's accuracy on the catalogue validation split (ties: the smaller "
                                      f"weight, then C); grid C {C_GRID}, weight {WEIGHT_GRID}", "tasks": {}}
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    gated = {t.strip() for t in args.gated.split(",") if t.strip()} & set(tasks)
    gate = None
    if gated:
        kinds = [kind for kind in ("catalogue", "photo", "street") if (kind, "train") in features]
        if len(kinds) < 2:
            raise SystemExit(f"gated heads ({sorted(gated)}) need a kind gate: give --photos and/or --street")
        gate = fit_gate({kind: features[kind, "train"] for kind in kinds})
        held_out = {key: gate.catalogue_probability(features[key]) for key in features if key[1] != "train"}
        report["kind_gate"] = {"kinds": list(gate.kinds), "held_out": {
            "/".join(key): {"images": len(p), "mean catalogue probability": round(float(p.mean()), 4),
                            "over one half": round(float((p > 0.5).mean()), 4)} for key, p in held_out.items()}}
    for task in tasks:
        truth = {part: true_indices(records["catalogue", part], classifier, task) for part in parts}
        candidates = []
        for c in C_GRID:
            head = fit_head(task, features["catalogue", "train"], truth["train"], classifier.taxonomy.num_classes(task), c,
                            1.0, gated=task in gated)
            for weight in WEIGHT_GRID:
                # scored exactly as it would serve: the heads' own mixing, gate included
                candidate = FeatureHeads((dataclasses.replace(head, weight=weight),), gate if head.gated else None)
                mixed = {part: candidate.mix(served_probs[part], features["catalogue", part])[task] for part in ("val", "test")}
                candidates.append({"C": c, "weight": weight, "val": accuracy(truth["val"], mixed["val"]),
                                   "test": accuracy(truth["test"], mixed["test"]), "head": head})
        best = max(candidates, key=lambda r: (r["val"], -r["weight"], -r["C"]))
        if best["weight"] > 0:
            heads.append(dataclasses.replace(best["head"], weight=best["weight"]))
        report["tasks"][task] = {
            "C": best["C"], "weight": best["weight"], "gated": task in gated,
            "before (served without it)": {"catalogue/val": accuracy(truth["val"], served_probs["val"][task]),
                                           "catalogue/test": accuracy(truth["test"], served_probs["test"][task])},
            "after": {"catalogue/val": best["val"], "catalogue/test": best["test"]},
            "candidates": [{k: v for k, v in r.items() if k != "head"} for r in candidates]}
    if not any(head.gated for head in heads):
        gate = None
        report.pop("kind_gate", None)
    feature_heads = FeatureHeads(tuple(heads), gate)
    report |= {"version": feature_heads.version if heads else None,
               "trained_on": f"pooled features (the mirror view: {classifier.flip_average}) of the catalogue "
                             f"training split, {len(records['catalogue', 'train'])} thumbnails",
               "seconds": round(time.time() - started, 1)}
    print(json.dumps({t: {k: v for k, v in r.items() if k != "candidates"} for t, r in report["tasks"].items()}
                     | {"kind_gate": report.get("kind_gate")}, indent=2))
    if args.write:
        path = args.bundle / "feature_heads.npz"
        if heads:
            feature_heads.save(args.bundle)
            manifest["feature_heads"] = {
                "file": path.name, "what": "served probabilities mixed with logistic regressions on the pooled "
                                           "features (classification.feature_heads)",
                **report, "command": "python -m classification.fit_feature_heads "
                + " ".join(sys.argv[1:] if argv is None else argv)}
        else:
            path.unlink(missing_ok=True)
            manifest.pop("feature_heads", None)
        (args.bundle / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
