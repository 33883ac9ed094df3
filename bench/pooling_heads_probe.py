"""Would the feature heads read catalogue articleType and gender better from the trunk's feature map pooled
another way than globally averaged?

    nice -n 5 .venv/bin/python bench/pooling_heads_probe.py [--run-dir runs/pooling-heads] [--limit N]

The served bundle's feature heads (classification.feature_heads) are logistic regressions on the trunk's
globally *averaged* features (1280 numbers from a 5x4 map at 160x120): a heel, a collar or a strap is a few
cells of that map, and averaging dilutes it into the rest of the shoe or shirt. This probe reads the same
map (the served weights, both mirror views as served, the mirrored view's map flipped back) four ways:

- `avg`: the served features (the probe checks they are the served classifier's own);
- `gem`: generalised mean, p = 3 (between average and max: the strongest cells count most);
- `avg+max`: average and maximum side by side (2,560);
- `grid`: the average of each quarter of the map, top/bottom x left/right (5,120: where a part is).

For each reading and task, a regression is fitted on the 32,032 catalogue training thumbnails for each C,
mixed into the served probabilities in place of the served head of that task (gated by the bundle's kind
gate, as the served articleType head is), and its C and weight are chosen, as
classification.fit_feature_heads chooses them, by the task's accuracy on the catalogue **validation**
split; the test split chose nothing. Phone photos and street crops are scored too (articleType group over
images: the gate should keep a catalogue head off them). Writes bench/results/pooling-heads-<time>.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402  (before TensorFlow)
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from bench.results import write_report  # noqa: E402
from classification import runtime  # noqa: E402
from classification.bundle import read_manifest  # noqa: E402
from classification.data import load_images  # noqa: E402
from classification.evaluate import true_indices  # noqa: E402
from classification.feature_heads import FeatureHeads, fit_head  # noqa: E402
from classification.fit_feature_heads import WEIGHT_GRID, accuracy, parse_args as fit_arguments  # noqa: E402
from classification.inference import Classifier  # noqa: E402
from classification.preprocess import preprocess_batch  # noqa: E402
from classification.taxonomy import TASKS  # noqa: E402
from classification.train_embedding_head import read_records  # noqa: E402

import keras  # noqa: E402

READINGS = ("avg", "gem", "avg+max", "grid")
C_GRID = (0.03, 0.1, 0.3)
PROBED_TASKS = ("articleType", "gender")
GEM_POWER = 3.0


def pooled_readings(feature_map: np.ndarray) -> dict[str, np.ndarray]:
    """(N, H, W, C) map of one view -> each reading, (N, features)."""
    m = feature_map.astype(np.float32)
    h, w = m.shape[1:3]
    rows = (slice(0, (h + 1) // 2), slice(h // 2, h))  # overlapping in the middle row when H is odd
    cols = (slice(0, (w + 1) // 2), slice(w // 2, w))
    average = m.mean(axis=(1, 2))
    return {"avg": average,
            "gem": np.power(np.power(np.clip(m, 1e-6, None), GEM_POWER).mean(axis=(1, 2)), 1 / GEM_POWER),
            "avg+max": np.concatenate([average, m.max(axis=(1, 2))], axis=1),
            "grid": np.concatenate([m[:, r, c].mean(axis=(1, 2)) for r in rows for c in cols], axis=1)}


def map_readings(network: keras.Model, images: list[np.ndarray], input_size: tuple[int, int],
                 batch_size: int = 64) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Every reading and every task's probabilities of `images`, both mirror views averaged (the mirrored
    view's map flipped back first, so that the grid's left stays the garment's left)."""
    readings, probs = {r: [] for r in READINGS}, {t: [] for t in TASKS}
    batch = preprocess_batch(images, input_size)
    for start in range(0, len(batch), batch_size):
        chunk = batch[start:start + batch_size]
        views = []
        for view in (chunk, chunk[:, :, ::-1]):
            with runtime.no_grad():
                out = network(np.ascontiguousarray(view), training=False)
            views.append({name: keras.ops.convert_to_numpy(value).astype(np.float32) for name, value in out.items()})
        views[1]["map"] = views[1]["map"][:, :, ::-1]
        one, two = (pooled_readings(v["map"]) for v in views)
        for r in READINGS:
            readings[r].append((one[r] + two[r]) / 2)
        for t in TASKS:
            probs[t].append((views[0][t] + views[1][t]) / 2)
    return ({r: np.concatenate(v) for r, v in readings.items()}, {t: np.concatenate(v) for t, v in probs.items()})


def cached_readings(args, classifier: Classifier, network: keras.Model, key: tuple[str, str], records: list
                    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    path = args.run_dir / f"readings-{classifier.manifest['version']}-{key[0]}-{key[1]}-{len(records)}.npz"
    if path.is_file():
        with np.load(path) as arrays:
            return ({r: arrays[r].astype(np.float32) for r in READINGS}, {t: arrays["p_" + t] for t in TASKS})
    max_side = None if key[0] == "catalogue" else args.max_side
    readings, probs = {r: [] for r in READINGS}, {t: [] for t in TASKS}
    step = 1024
    for start in tqdm(range(0, len(records), step), desc=f"map {key[0]}/{key[1]}", unit="chunk"):
        images = load_images(records[start:start + step], max_side)
        part_readings, part_probs = map_readings(network, images, classifier.input_size)
        for r in READINGS:
            readings[r].append(part_readings[r])
        for t in TASKS:
            probs[t].append(part_probs[t])
    readings = {r: np.concatenate(v) for r, v in readings.items()}
    probs = {t: np.concatenate(v) for t, v in probs.items()}
    np.savez(path, **{r: v.astype(np.float16) for r, v in readings.items()}, **{"p_" + t: v for t, v in probs.items()})
    return readings, probs


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "fashion-lite0")
    parser.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "pooling-heads")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--limit", type=int, help="at most this many images of each kind and part (a quick look)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    args.run_dir.mkdir(parents=True, exist_ok=True)
    fit_args = fit_arguments(["--bundle", str(args.bundle), "--run-dir", str(args.run_dir),
                              "--catalogue", str(args.data / "fashion-product-images-small"),
                              "--photos", str(args.data / "clothing-dataset"),
                              "--street", str(args.data / "clothing-co-parsing")])
    args.max_side = fit_args.max_side
    manifest = read_manifest(args.bundle)
    classifier = Classifier(args.bundle, serving_graph=False, neighbour_vote=False, feature_heads=False)
    model = classifier.model
    network = keras.Model(model.input, {"map": model.get_layer("gap").input,
                                        **{t: model.get_layer(t).output for t in TASKS}})
    records, _ = read_records(fit_args, classifier.taxonomy, json.loads((args.bundle / "split.json").read_text()))
    if args.limit:
        records = {key: rows[:args.limit] for key, rows in records.items()}
    readings, probs = {}, {}
    for key in [("catalogue", "train"), ("catalogue", "val"), ("catalogue", "test"), ("photo", "val"), ("street", "val")]:
        readings[key], probs[key] = cached_readings(args, classifier, network, key, records[key])

    # The probe's `avg` must be what the service's heads read: the served classifier's pooled features.
    check = load_images(records["catalogue", "test"][:16])
    served_features, _ = classifier.embedding_inputs(check)
    difference = float(np.abs(served_features - readings["catalogue", "test"]["avg"][:16]).max())
    assert difference < 1e-2, f"the probe's average pooling is not the served features (max difference {difference})"

    served = Classifier(args.bundle)
    heads, gate = served.feature_heads, served.feature_heads.gate
    voted = Classifier(args.bundle, feature_heads=False)
    held_out = [key for key in readings if key[1] != "train"]
    # the model's probabilities with the neighbour vote, before any head: what every candidate is mixed into
    with_vote = {key: voted.voted(readings[key]["avg"], probs[key]) for key in held_out}
    report = {"bundle": str(args.bundle), "version": manifest["version"], "served features check": difference,
              "chosen_on": f"the task's accuracy on the catalogue validation split; C {C_GRID}, weight {WEIGHT_GRID}",
              "tasks": {}}
    names = classifier.taxonomy.labels["articleType"]

    def group_accuracy(key, article_probs) -> float:
        return round(float(np.mean([names[i] in r.allowed["articleType"]
                                    for i, r in zip(article_probs.argmax(axis=1), records[key])])), 4)

    for task in PROBED_TASKS:
        served_head = next(h for h in heads.heads if h.task == task)
        without = FeatureHeads(tuple(h for h in heads.heads if h.task != task), gate, heads.label_heads)
        base = {key: without.mix(with_vote[key], readings[key]["avg"])[task] for key in held_out}
        as_served = {key: heads.mix(with_vote[key], readings[key]["avg"])[task] for key in held_out}
        share = {key: (gate.catalogue_probability(readings[key]["avg"]) if served_head.gated
                       else np.ones(len(records[key]), np.float32))[:, None] for key in held_out}
        truth = {part: true_indices(records["catalogue", part], classifier, task) for part in ("train", "val", "test")}
        task_report = {"served head": {"C": None, "weight": served_head.weight, "gated": served_head.gated,
                                       "catalogue/val": accuracy(truth["val"], as_served["catalogue", "val"]),
                                       "catalogue/test": accuracy(truth["test"], as_served["catalogue", "test"])},
                       "without a head": {"catalogue/val": accuracy(truth["val"], base["catalogue", "val"]),
                                          "catalogue/test": accuracy(truth["test"], base["catalogue", "test"])},
                       "readings": {}}
        if task == "articleType":
            task_report["served head"] |= {f"{kind}/val group": group_accuracy((kind, "val"), as_served[kind, "val"])
                                           for kind in ("photo", "street")}
        for reading in READINGS:
            rows = []
            for c in tqdm(C_GRID, desc=f"{task} {reading}", leave=False):
                head = fit_head(task, readings["catalogue", "train"][reading], truth["train"],
                                classifier.taxonomy.num_classes(task), c, 1.0, gated=served_head.gated)
                read = {key: head.probabilities(readings[key][reading]) for key in held_out}
                for weight in WEIGHT_GRID:
                    mixed = {key: (1 - weight * share[key]) * base[key] + weight * share[key] * read[key]
                             for key in held_out}
                    row = {"C": c, "weight": weight, "catalogue/val": accuracy(truth["val"], mixed["catalogue", "val"]),
                           "catalogue/test": accuracy(truth["test"], mixed["catalogue", "test"])}
                    if task == "articleType":
                        row |= {f"{kind}/val group": group_accuracy((kind, "val"), mixed[kind, "val"])
                                for kind in ("photo", "street")}
                    rows.append(row)
            best = max(rows, key=lambda r: (r["catalogue/val"], -r["weight"], -r["C"]))
            task_report["readings"][reading] = {"chosen on validation": best, "candidates": rows}
            print(task, reading, best, flush=True)
        report["tasks"][task] = task_report
    report["seconds"] = round(time.perf_counter() - started, 1)
    if not args.limit:
        write_report("pooling-heads", report)
    print(json.dumps({t: {"served head": r["served head"], **{k: v["chosen on validation"] for k, v in r["readings"].items()}}
                      for t, r in report["tasks"].items()}, indent=1))
    return report


if __name__ == "__main__":
    main()
