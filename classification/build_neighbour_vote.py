"""Build a classifier bundle's neighbour vote (classification.neighbour_vote) and choose its parameters.

    python -m classification.build_neighbour_vote --bundle models/fashion-lite0 \\
        --catalogue ../shared/datasets/fashion-product-images-small \\
        --photos ../shared/datasets/clothing-dataset --street ../shared/datasets/clothing-co-parsing \\
        --run-dir runs/embedding-head [--write]

The vote's rows are the bundle's training images (each kind's train part, by the bundle's split),
in its embedding head's projection of the pooled features as the bundle serves them (the mirror view
too). Pooled features and probabilities are cached in --run-dir, shared with
classification.train_embedding_head. k, temperature and weight are chosen on the catalogue validation
split (the sum of its seven tasks' accuracies); the catalogue test split, the validation senders' phone
photos and the held-out street crops chose nothing and are reported before and after. These figures come
from the cached features (photos and crops shrunk to --max-side as in training); the evaluate CLI
measures the bundle as it serves. `--write` stores the vote in the bundle and this report in its manifest.

`--rows-with-validation`: once the parameters are chosen, the catalogue validation thumbnails join the
rows too (every labelled image but the held-out ones then votes); the figures after are reported without
that split, whose images would find themselves.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from typing import Mapping, Sequence

from . import runtime  # noqa: F401  (import order and backend first)

import numpy as np  # noqa: E402

from .embedding_head import HEAD_FILE  # noqa: E402
from .evaluate import allowed_set_scores, decoded_indices, true_indices  # noqa: E402
from .inference import Classifier  # noqa: E402
from .neighbour_vote import NeighbourVote, project, vote_of  # noqa: E402
from .taxonomy import TASKS  # noqa: E402
from .train_embedding_head import add_data_arguments, bundle_features  # noqa: E402

GRID = {"k": (3, 5, 10, 20), "temperature": (0.02, 0.05, 0.1), "weight": (0.2, 0.35, 0.5)}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(parser)
    parser.add_argument("--write", action="store_true", help="store the vote and its figures in the bundle")
    parser.add_argument("--rows-with-validation", action="store_true",
                        help="after choosing the parameters, add the catalogue validation images as rows")
    return parser.parse_args(argv)


def scores(classifier: Classifier, key: tuple[str, str], records, probs: Mapping[str, np.ndarray]) -> dict:
    """The evaluate CLI's figures from probabilities: every task's accuracy (hierarchy decoded jointly) on
    catalogue rows; articleType-group and masterCategory accuracy on photos and crops."""
    described = classifier.describe(probs)
    if key[0] == "catalogue":
        out = {}
        for task in TASKS:
            predicted = decoded_indices(classifier, described, task)
            true = true_indices(records, classifier, task)
            out[task] = round(float((true == predicted)[true != -1].mean()), 4)
        return out
    report, _, _ = allowed_set_scores([r.allowed for r in records], [r.source_label for r in records], described)
    return {name: round(report[name], 4) for name in
            ("articleType_group_accuracy", "articleType_group_accuracy_micro", "masterCategory_accuracy")}


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.time()
    if not (args.bundle / HEAD_FILE).is_file():
        raise SystemExit(f"{args.bundle} has no embedding head: train one first (classification.train_embedding_head)")
    # The model's own outputs: a vote already in the bundle must not vote on its own rows.
    manifest, classifier, records, features, probs = bundle_features(args)
    taxonomy = classifier.taxonomy

    train_keys = [key for key in records if key[1] == "train"]

    def vote_on(row_keys) -> NeighbourVote:
        return vote_of([r for key in row_keys for r in records[key]],
                       {task: np.concatenate([probs[key][task] for key in row_keys]) for task in TASKS},
                       np.concatenate([project(classifier.embedding_head, features[key]) for key in row_keys]),
                       taxonomy, TASKS, classifier.embedding_head.projection_version)

    vote = vote_on(train_keys)

    held_out = [key for key in records if key[1] != "train"]
    neighbours = {key: vote.neighbours(project(classifier.embedding_head, features[key]), k=max(GRID["k"]))
                  for key in held_out}

    def figures(candidate: NeighbourVote | None, keys) -> dict:
        out = {}
        for key in keys:
            mixed = probs[key] if candidate is None else candidate.mixed(probs[key], candidate.votes(*neighbours[key]))
            out["/".join(key)] = scores(classifier, key, records[key], mixed)
        return out

    chooser = ("catalogue", "val")
    before = figures(None, held_out)
    candidates = []
    for k, temperature, weight in itertools.product(*GRID.values()):
        candidate = vote.with_parameters(k, temperature, weight)
        on_val = figures(candidate, [chooser])["catalogue/val"]
        candidates.append({"k": k, "temperature": temperature, "weight": weight,
                           "catalogue_val_sum": round(sum(on_val.values()), 4)})
    best = max(candidates, key=lambda c: c["catalogue_val_sum"])
    row_keys = train_keys + ([chooser] if args.rows_with_validation else [])
    vote = vote_on(row_keys).with_parameters(best["k"], best["temperature"], best["weight"])
    if args.rows_with_validation:  # the chooser's images now find themselves: scored without them
        held_out = [key for key in held_out if key != chooser]
        neighbours = {key: vote.neighbours(project(classifier.embedding_head, features[key]), k=max(GRID["k"]))
                      for key in held_out}
    after = figures(vote, held_out)
    others = [name for name in before if name != "/".join(chooser)]
    report = {
        "version": vote.version, "parameters": {name: best[name] for name in GRID},
        "rows": {"/".join(key): len(records[key]) for key in row_keys}, "dim": int(vote.vectors.shape[1]),
        "head": vote.head_version,
        "chosen_on": f"the largest sum of the seven task accuracies on the catalogue validation split; grid {GRID}",
        "before (model alone)": before, "after (with the vote)": after,
        "held_out_sum_change": round(sum(sum(after[n].values()) - sum(before[n].values()) for n in others), 4),
        "candidates": candidates, "seconds": round(time.time() - started, 1)}
    print(json.dumps({name: value for name, value in report.items() if name != "candidates"}, indent=2))
    if args.write:
        vote.save(args.bundle)
        manifest["neighbour_vote"] = {
            "file": "neighbour_vote.npz",
            "what": "tags mixed with the labels of the k nearest training images (classification.neighbour_vote)",
            **report, "command": "python -m classification.build_neighbour_vote " + " ".join(sys.argv[1:] if argv is None else argv)}
        (args.bundle / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
