"""Would a second network that reads catalogue thumbnails alone lift the catalogue's tags, mixed in where
the kind gate says an image is a thumbnail?

    nice -n 5 .venv/bin/python bench/catalogue_specialist_probe.py --specialist runs/cat-light/fashion-lite0

The served network is trained to read thumbnails, phone photos and street crops alike, thumbnails made to
look like photos (backgrounds, rotation, blur, JPEG), and it fits the catalogue's training thumbnails little
better than its test ones. The specialist is a bundle trained from the served weights on thumbnails alone
(`python -m classification.train ... --init-from models/fashion-lite0 --catalogue-augmentation light`). Its
probabilities (both mirror views, as served) are mixed into the served ones (neighbour vote and feature
heads) in proportion to the served kind gate's catalogue probability, p = (1 - w g) served + w g specialist,
and, second, the specialist's probabilities put through the served stack (the served vote and feature heads, which
find neighbours and read features in the served trunk's space) and mixed in the same way, and, third, when the
specialist's bundle has a vote or feature heads of its own, its probabilities with them; w chosen on the
catalogue **validation** split (the sum of its seven accuracies); the test split, the
validation senders' phone photos and the held-out street crops choose nothing. Features of the served bundle
come from the cache of classification.build_neighbour_vote (`runs/knn`), the specialist's are cached in
`--run-dir`. Writes bench/results/catalogue-specialist-<time>.json.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from classification import runtime  # noqa: E402,F401  (torch before TensorFlow, the backend first)

from bench.results import write_report  # noqa: E402
from bench.served_data import add_served_data_arguments  # noqa: E402
from classification.build_neighbour_vote import scores  # noqa: E402
from classification.inference import Classifier  # noqa: E402
from classification.taxonomy import TASKS  # noqa: E402
from classification.train_embedding_head import bundle_features, embedding_inputs  # noqa: E402

WEIGHTS = (0.0, 0.2, 0.35, 0.5, 0.65, 0.8, 1.0)
HELD_OUT = (("catalogue", "val"), ("catalogue", "test"), ("photo", "val"), ("street", "val"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_served_data_arguments(parser)
    parser.add_argument("--specialist", type=Path, required=True, help="a bundle trained on thumbnails alone")
    parser.add_argument("--specialist-run-dir", type=Path, default=ROOT / "runs" / "catalogue-specialist")
    args = parser.parse_args()
    started = time.time()
    _, classifier, records, features, probs = bundle_features(args)
    served = Classifier(args.bundle)  # the vote and feature heads as served
    specialist = Classifier(args.specialist, flip_average=served.flip_average, neighbour_vote=False,
                            feature_heads=False)  # read with the served mirror view
    # A specialist given a vote and feature heads of its own (fitted in its own feature space) is scored with them too.
    own_stack = Classifier(args.specialist, flip_average=served.flip_average) if (
        specialist.manifest.get("neighbour_vote") or specialist.manifest.get("feature_heads")) else None
    special_args = argparse.Namespace(**{**vars(args), "run_dir": args.specialist_run_dir})
    special_args.run_dir.mkdir(parents=True, exist_ok=True)

    report = {"bundle": str(args.bundle), "specialist": str(args.specialist),
              "specialist_version": specialist.manifest["version"],
              "specialist_training": specialist.manifest.get("training", {}).get("command"),
              "chosen_on": "the sum of the seven task accuracies on the catalogue validation split", "sets": {}}
    # How well the served weights fit the thumbnails they trained on: against their test figure, a network that
    # memorised its training images or one that does not fit them.
    train = ("catalogue", "train")
    report["served model alone on the catalogue training split"] = scores(classifier, train, records[train], probs[train])
    by_weight = {}  # mixture -> weight -> held-out set -> figures
    for key in HELD_OUT:
        name = "/".join(key)
        served_probs = served.voted(features[key], probs[key])  # the served tags: vote and feature heads
        special_features, special_probs = embedding_inputs(specialist, special_args, *key, records[key], None)
        gate = served.feature_heads.gate.catalogue_probability(features[key])[:, None]
        # What is mixed in: the specialist's probabilities as they come; the same voted and mixed with the served
        # feature heads (the vote finds neighbours, the heads read features, in the served trunk's space); and,
        # when it has them, with its own vote and heads.
        candidates = {"specialist mixed in": special_probs,
                      "specialist's stack mixed in": served.voted(features[key], special_probs)}
        if own_stack is not None:
            candidates["specialist's own stack mixed in"] = own_stack.voted(special_features, special_probs)
        report["sets"][name] = {
            "images": len(records[key]), "mean catalogue probability": round(float(gate.mean()), 4),
            "served model alone": scores(classifier, key, records[key], probs[key]),
            "specialist alone": scores(classifier, key, records[key], special_probs),
            "served": scores(classifier, key, records[key], served_probs),
            "served stack on the specialist's probabilities":
                scores(classifier, key, records[key], candidates["specialist's stack mixed in"])}
        if own_stack is not None:
            report["sets"][name]["specialist with its own stack"] = scores(
                classifier, key, records[key], candidates["specialist's own stack mixed in"])
        for mixture, other in candidates.items():
            for w in WEIGHTS:
                mixed = {t: (1 - w * gate) * served_probs[t] + w * gate * other[t] for t in TASKS}
                by_weight.setdefault(mixture, {}).setdefault(w, {})[name] = scores(classifier, key, records[key], mixed)
        print(key, report["sets"][name], flush=True)
    for mixture, figures in by_weight.items():
        chosen = max(WEIGHTS, key=lambda w: (round(sum(figures[w]["catalogue/val"].values()), 6), -w))
        report[mixture] = {"weights": {str(w): f for w, f in figures.items()}, "chosen_weight": chosen,
                           "chosen": figures[chosen]}
        print(mixture, "chosen weight", chosen, figures[chosen], flush=True)
    report["seconds"] = round(time.time() - started, 1)
    write_report("catalogue-specialist", report)


if __name__ == "__main__":
    main()
