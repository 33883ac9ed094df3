"""Why the category feature heads are gated: the same heads mixed in everywhere, by the gate, and by a hard gate.

    nice -n 15 .venv/bin/python bench/category_heads_gate.py [--run-dir runs/knn]

From the served bundle's cached pooled features (the feature cache of classification.fit_feature_heads;
photos and crops shrunk as in training, so the photo kinds read a little lower than the evaluate CLI's
full-size figures) and its probabilities with the neighbour vote, without any feature heads. The heads
are fitted as classification.fit_feature_heads fits them, on the catalogue's training thumbnails, at the C
the served bundle chose per level (its manifest's `feature_heads.tasks`). Each row mixes the heads of
some category levels at one weight:

- `everywhere`: into every image's probabilities;
- `gate`: scaled by the kind gate's catalogue probability (as served);
- `hard gate`: only where that probability is over one half.

Every figure the evaluate CLI reports for the category: the catalogue's three levels (validation and
test), the phone photos' and street crops' articleType group (mean over labels, over images) and
masterCategory. Writes bench/results/category-heads-gate-<time>.json (3 min on the 2 cores).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from classification import runtime  # noqa: E402,F401  (torch before TensorFlow, the backend first)

import numpy as np  # noqa: E402

from bench.results import write_report  # noqa: E402
from bench.served_data import add_served_data_arguments  # noqa: E402
from classification.build_neighbour_vote import scores  # noqa: E402
from classification.evaluate import true_indices  # noqa: E402
from classification.feature_heads import fit_gate, fit_head  # noqa: E402
from classification.inference import Classifier  # noqa: E402
from classification.taxonomy import HIERARCHY_LEVELS  # noqa: E402
from classification.train_embedding_head import bundle_features  # noqa: E402

HELD_OUT = (("catalogue", "val"), ("catalogue", "test"), ("photo", "val"), ("street", "val"))
LEVEL_SETS = (("articleType",), ("articleType", "subCategory"), ("articleType", "subCategory", "masterCategory"))
WEIGHTS = (0.3, 0.5, 0.7)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_served_data_arguments(parser)
    args = parser.parse_args()
    manifest, classifier, records, features, probs = bundle_features(args)
    served = Classifier(args.bundle, feature_heads=False)
    voted = {key: served.voted(features[key], probs[key]) for key in HELD_OUT}
    chosen_c = {task: spec["C"] for task, spec in (manifest.get("feature_heads") or {}).get("tasks", {}).items()}
    gate = fit_gate({kind: features[kind, "train"] for kind in ("catalogue", "photo", "street")})
    catalogue = {key: gate.catalogue_probability(features[key])[:, None] for key in HELD_OUT}
    heads = {}
    for task in HIERARCHY_LEVELS:
        truth = true_indices(records["catalogue", "train"], classifier, task)
        head = fit_head(task, features["catalogue", "train"], truth, classifier.taxonomy.num_classes(task),
                        chosen_c.get(task, 0.1), 1.0)
        heads[task] = {key: head.probabilities(features[key]) for key in HELD_OUT}
        print(f"fitted {task} (C {chosen_c.get(task, 0.1)})", flush=True)

    def figures(mixed: dict) -> dict:
        out = {}
        for key in HELD_OUT:
            got = scores(served, key, records[key], mixed[key])
            out["/".join(key)] = {t: got[t] for t in HIERARCHY_LEVELS} if key[0] == "catalogue" else got
        return out

    rows = [{"mixed": "nowhere (the vote alone)", "levels": [], "weight": 0.0, **figures(voted)}]
    shares = {"everywhere": lambda key: 1.0, "gate": lambda key: catalogue[key],
              "hard gate": lambda key: (catalogue[key] > 0.5).astype(np.float32)}
    for mixed_where, share in shares.items():
        for levels in LEVEL_SETS:
            for weight in WEIGHTS:
                mixed = {}
                for key in HELD_OUT:
                    w = weight * share(key)
                    mixed[key] = dict(voted[key]) | {t: (1 - w) * voted[key][t] + w * heads[t][key] for t in levels}
                rows.append({"mixed": mixed_where, "levels": list(levels), "weight": weight, **figures(mixed)})
                print(json.dumps(rows[-1]), flush=True)
    write_report("category-heads-gate", {
        "bundle": str(args.bundle), "heads_C": {t: chosen_c.get(t, 0.1) for t in HIERARCHY_LEVELS},
        "gate_on_held_out": {"/".join(key): round(float(p.mean()), 4) for key, p in catalogue.items()}, "rows": rows})


if __name__ == "__main__":
    main()
