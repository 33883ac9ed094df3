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

The kinds in `--label-heads` (of those given) get a source-label head each (classification.feature_heads):
a regression on that kind's training images reading its own labels, mixed into articleType by the gate's
probability of the kind, after the task heads. Its C and weight are chosen by the kind's articleType group
accuracy (mean over labels) on its **validation** split, the only images of that kind the network never
trained on, so that split's figures are no longer held out for it. How much of the gain holds on images that
chose nothing is measured here too: the validation groups (senders, street photos) halved at random, the
choice made on one half and scored on the other, both ways round, over `--halvings` halvings
(`cross_half` in the report).
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

from .build_neighbour_vote import scores  # noqa: E402
from .data import encode_allowed  # noqa: E402
from .evaluate import true_indices  # noqa: E402
from .feature_heads import FeatureHeads, SourceLabelHead, fit_gate, fit_head  # noqa: E402
from .inference import Classifier  # noqa: E402
from .train_embedding_head import add_data_arguments, bundle_features  # noqa: E402

C_GRID = (0.01, 0.1, 1.0)
WEIGHT_GRID = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
LABEL_WEIGHT_GRID = (0.0, 0.2, 0.35, 0.5, 0.7, 1.0)
GROUP = "articleType_group_accuracy"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(parser)
    parser.add_argument("--tasks", default="gender", help="comma-separated catalogue tasks to fit a head for")
    parser.add_argument("--gated", default="masterCategory,subCategory,articleType",
                        help="comma-separated tasks whose heads are gated by the kind gate (fitted when one is asked for)")
    parser.add_argument("--label-heads", default="street",
                        help="comma-separated kinds (of those given) that get a source-label head; '' for none. "
                             "Default: the street crops only (the phone photos' head gained on the cached features "
                             "that chose it and lost on full-size photos as served: docs/classifier.md, Feature heads)")
    parser.add_argument("--halvings", type=int, default=6,
                        help="random halvings of each kind's validation groups for the cross-half estimate")
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
    label_kinds = [k for k in (k.strip() for k in args.label_heads.split(",")) if k and (k, "train") in features]
    gate = None
    if gated or label_kinds:
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
    label_heads = []
    if label_kinds:
        task_heads = FeatureHeads(tuple(heads), gate)
        base = {key: task_heads.mix(served.voted(features[key], probs[key]), features[key])
                for key in features if key[1] != "train"}
        report["label_heads"] = {}
        for kind in label_kinds:
            head, report["label_heads"][kind] = fit_label_head(kind, classifier, records, features, base, gate, args.halvings)
            if head is not None:
                label_heads.append(head)
        if label_heads:
            with_labels = FeatureHeads((), gate, tuple(label_heads))  # `base` has the task heads already
            report["label_heads"]["all together"] = {
                "/".join(key): {"before": scores(classifier, key, records[key], base[key]),
                                "after": scores(classifier, key, records[key], with_labels.mix(base[key], features[key]))}
                for key in base}
    if not any(head.gated for head in heads) and not label_heads:
        gate = None
        report.pop("kind_gate", None)
    feature_heads = FeatureHeads(tuple(heads), gate, tuple(label_heads))
    report |= {"version": feature_heads.version if heads or label_heads else None,
               "trained_on": f"pooled features (the mirror view: {classifier.flip_average}) of the catalogue "
                             f"training split, {len(records['catalogue', 'train'])} thumbnails",
               "seconds": round(time.time() - started, 1)}
    print(json.dumps({t: {k: v for k, v in r.items() if k != "candidates"} for t, r in report["tasks"].items()}
                     | {"kind_gate": report.get("kind_gate")}
                     | {f"label_heads/{kind}": {k: v for k, v in r.items() if k not in ("candidates", "halvings")}
                        for kind, r in report.get("label_heads", {}).items()}, indent=2))
    if args.write:
        path = args.bundle / "feature_heads.npz"
        if heads or label_heads:
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


def fit_label_head(kind: str, classifier: Classifier, records: dict, features: dict, base: dict, gate,
                   halvings: int) -> tuple[SourceLabelHead | None, dict]:
    """`kind`'s source-label head with the (C, weight) its validation split chose (None for a weight of 0),
    and the report: every candidate, the choice, and the cross-half estimate of what it gains."""
    train, key = records[kind, "train"], (kind, "val")
    one_of_each = {r.source_label: r for r in train}  # a label allows the same articleTypes on every record
    labels = tuple(sorted(one_of_each))
    allowed = encode_allowed([one_of_each[label] for label in labels], classifier.taxonomy)["articleType"].astype(bool)
    truth = np.asarray([labels.index(r.source_label) for r in train])
    heads = {}
    for c in C_GRID:
        regression = fit_head(kind, features[kind, "train"], truth, len(labels), c, 1.0)
        heads |= {(c, w): SourceLabelHead(kind, labels, allowed, regression, w) for w in LABEL_WEIGHT_GRID}
    # each candidate's probabilities on the validation split, mixed once: every half below reads them
    mixed = {candidate: FeatureHeads((), gate, (head,)).mix(base[key], features[key]) for candidate, head in heads.items()}
    served_only = (C_GRID[0], 0.0)  # weight 0: the served probabilities as they are

    def group_scores(candidate: tuple, rows=None) -> dict:
        rows = np.arange(len(records[key])) if rows is None else rows
        return scores(classifier, key, [records[key][i] for i in rows], {t: p[rows] for t, p in mixed[candidate].items()})

    def best(rows=None) -> tuple:  # ties: the smaller weight, then the smaller C
        return max(heads, key=lambda cw: (group_scores(cw, rows)[GROUP], -cw[1], -cw[0]))

    chosen = best()
    groups = sorted({r.group for r in records[key]})
    rng, cross_half = np.random.default_rng(0), []
    for _ in range(halvings):
        order = rng.permutation(len(groups))
        half_of = {groups[g]: int(i < len(groups) // 2) for i, g in enumerate(order)}
        halves = [np.flatnonzero([half_of[r.group] == h for r in records[key]]) for h in (0, 1)]
        if not all(len(half) for half in halves):
            continue  # fewer than two groups: nothing to hold out
        for choose, score in ((0, 1), (1, 0)):
            choice = best(halves[choose])
            cross_half.append({"chosen": {"C": choice[0], "weight": choice[1]},
                               "before": group_scores(served_only, halves[score]),
                               "after": group_scores(choice, halves[score])})
    mean = {side: {name: round(float(np.mean([h[side][name] for h in cross_half])), 4) for name in cross_half[0][side]}
            for side in ("before", "after")} if cross_half else None
    report = {"labels": len(labels), "trained_on": f"{len(train)} {kind} training images",
              "C": chosen[0], "weight": chosen[1],
              "chosen_on": f"{kind}/val {GROUP} (mean over labels); ties: the smaller weight, then C",
              "before": group_scores(served_only), "after (on the images that chose it)": group_scores(chosen),
              "cross_half": {"what": "the validation groups halved at random (seed 0); chosen on one half, scored on "
                                     "the other, both ways round: the mean", "validation_groups": len(groups),
                             **(mean or {}), "halvings": cross_half},
              "candidates": [{"C": c, "weight": w, **group_scores((c, w))} for c, w in heads]}
    print(f"{kind} source-label head: C {chosen[0]}, weight {chosen[1]}; cross-half {mean}", flush=True)
    return (heads[chosen] if chosen[1] > 0 else None), report


if __name__ == "__main__":
    main()
