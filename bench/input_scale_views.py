"""More than one input size per image: the served tags averaged over views at several sizes.

    nice -n 15 .venv/bin/python bench/input_scale_views.py [--bundle models/fashion-lite0] \
        [--sizes 160x120 192x144 224x168 128x96] [--max-catalogue N]

The trunk pools globally, so the served weights run at any input size; a larger size showed the
thumbnails' and crops' detail a little better (`bench/classifier_input_sizes.py`). Here every image
of the held-out sets (catalogue test, validation senders' phone photos, held-out street crops, as
`classification.evaluate` selects them) and of the catalogue **validation** split goes through the
bundle at each size (with the mirror view, as served); each combination of sizes then averages the
model's probabilities, and the neighbour vote mixes in the labels of the nearest training images as
served (its query: the pooled features at the served size, the space its rows were built in). The
combination to serve is chosen on the catalogue validation split alone (the sum of its seven task
accuracies, as the vote's parameters were); the held-out sets chose nothing. Also timed: milliseconds
per image of each size (the model call alone, batches of 64, torch, this machine).

Writes bench/results/input-scale-views-<time>.json.
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from classification import runtime  # noqa: E402,F401  (torch before TensorFlow, the backend first)

import json  # noqa: E402

import numpy as np  # noqa: E402

from bench.results import write_report  # noqa: E402
from classification.build_neighbour_vote import scores  # noqa: E402
from classification.catalogue import read_catalogue  # noqa: E402
from classification.compare_bundles import FIGURES  # noqa: E402
from classification.data import load_images  # noqa: E402
from classification.evaluate import held_out_records  # noqa: E402
from classification.inference import Classifier  # noqa: E402
from classification.neighbour_vote import project  # noqa: E402
from classification.preprocess import preprocess_batch  # noqa: E402
from classification.records import from_catalogue  # noqa: E402
from classification.taxonomy import TASKS  # noqa: E402

DATA = ROOT.parent / "shared" / "datasets"
CHOOSER = "catalogue/val"


def parse_size(text: str) -> tuple[int, int]:
    height, width = text.lower().split("x")
    return int(height), int(width)


def sets_of(records: dict, bundle: Path, catalogue: Path, max_catalogue: int | None) -> dict:
    """name -> records: the three held-out kinds and the catalogue validation split (the chooser)."""
    split = json.loads((bundle / "split.json").read_text())
    val_ids = set(split["val"])
    out = {"catalogue/val": [r for r in from_catalogue(read_catalogue(catalogue).records) if r.id in val_ids],
           "catalogue/test": records["catalogue"], "photo/val": records["photo"], "street/val": records["street"]}
    if max_catalogue:
        out = {name: rows[:max_catalogue] if name.startswith("catalogue") else rows for name, rows in out.items()}
    return out


def figures_of(served: Classifier, sets: dict, probs: dict) -> dict:
    """The 13 figures compare_bundles weighs (held-out sets) plus the chooser's seven, from probabilities."""
    by_set = {name: scores(served, tuple(name.split("/")), sets[name], probs[name]) for name in sets}
    held_out = {label: by_set[f"{kind}/{'test' if kind == 'catalogue' else 'val'}"][key] for kind, key, label in FIGURES}
    return {"held_out": held_out, "chooser_sum": round(sum(by_set[CHOOSER].values()), 4), "by_set": by_set}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "fashion-lite0")
    parser.add_argument("--catalogue", type=Path, default=DATA / "fashion-product-images-small")
    parser.add_argument("--photos", type=Path, default=DATA / "clothing-dataset")
    parser.add_argument("--street", type=Path, default=DATA / "clothing-co-parsing")
    parser.add_argument("--sizes", nargs="+", default=["160x120", "192x144", "224x168", "128x96"],
                        help="input sizes HxW; the first is the bundle's own (the vote's query space)")
    parser.add_argument("--max-catalogue", type=int, help="only the first N thumbnails of each catalogue split (a quick look)")
    args = parser.parse_args(argv)
    sizes = [parse_size(s) for s in args.sizes]

    served = Classifier(args.bundle, batch_size=64)  # the vote and decoding, as served
    if served.neighbour_vote is None:
        raise SystemExit(f"{args.bundle} has no neighbour vote")
    sets = sets_of(held_out_records(args.bundle, args.catalogue, args.photos, args.street),
                   args.bundle, args.catalogue, args.max_catalogue)
    images = {name: load_images(rows, desc=f"{name}: decoding") for name, rows in sets.items()}

    probs, base_features, ms_per_image = {}, {}, {}
    for size in sizes:
        at_size = Classifier(args.bundle, batch_size=64, input_size=size, neighbour_vote=False, feature_heads=False)
        label = f"{size[0]}x{size[1]}"
        probs[label], seconds, count = {}, 0.0, 0
        for name, batch_images in images.items():
            batch = preprocess_batch(batch_images, at_size.input_size)
            started = time.perf_counter()
            outputs = at_size._forward(at_size._two_output_model(), batch, (*TASKS, "embedding"))
            seconds, count = seconds + time.perf_counter() - started, count + len(batch)
            features = outputs.pop("embedding")
            probs[label][name] = outputs
            if size == sizes[0]:
                base_features[name] = features
        ms_per_image[label] = round(1000 * seconds / count, 2)
        print(f"{label}: {count} images, {ms_per_image[label]} ms an image (both mirror views)", flush=True)

    queries = {name: project(served.embedding_head, features) for name, features in base_features.items()}
    vote = served.neighbour_vote
    labels = [f"{h}x{w}" for h, w in sizes]
    rows = []
    for count in range(1, len(labels) + 1):
        for combination in itertools.combinations(labels, count):
            if labels[0] not in combination:
                continue  # the served size stays in every combination (the vote's query is made there)
            averaged = {name: {task: np.mean([probs[s][name][task] for s in combination], axis=0) for task in TASKS}
                        for name in sets}
            voted = {name: vote.mix(averaged[name], queries[name]) for name in sets}
            rows.append({"sizes": list(combination),
                         "ms_per_image": round(sum(ms_per_image[s] for s in combination), 2),
                         "model_alone": figures_of(served, sets, averaged),
                         "with_vote": figures_of(served, sets, voted)})
            print(f"{'+'.join(combination)}: chooser {rows[-1]['with_vote']['chooser_sum']}", flush=True)

    base = rows[0]["with_vote"]["held_out"]
    for row in rows:
        for mode in ("model_alone", "with_vote"):
            held_out = row[mode]["held_out"]
            row[mode]["delta_sum"] = round(sum(held_out[k] - base[k] for k in base), 4)
            row[mode]["up_or_equal"] = sum(held_out[k] - base[k] > -5e-5 for k in base)
    chosen = max(rows, key=lambda r: r["with_vote"]["chooser_sum"])

    names = list(base)
    print("| sizes | ms/image | chooser sum | sum against served | up or equal | " + " | ".join(names) + " |")
    for row in rows:
        figures = row["with_vote"]
        print(f"| {' + '.join(row['sizes'])} | {row['ms_per_image']} | {figures['chooser_sum']} | "
              f"{figures['delta_sum']:+.4f} | {figures['up_or_equal']} | "
              + " | ".join(f"{figures['held_out'][n]:.4f}" for n in names) + " |")
    print(f"chosen on {CHOOSER}: {' + '.join(chosen['sizes'])}")
    report = {"bundle": str(args.bundle), "version": served.manifest.get("version"),
              "vote": vote.version, "images": {name: len(rows_) for name, rows_ in sets.items()},
              "ms_per_image": ms_per_image, "chosen_on": f"largest sum of the seven task accuracies on {CHOOSER}, with the vote",
              "chosen": chosen["sizes"], "rows": rows}
    write_report("input-scale-views", report)
    return report


if __name__ == "__main__":
    main()
