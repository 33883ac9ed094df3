"""Would a small MLP read catalogue articleType from the pooled features better than the served regression?

    nice -n 15 .venv/bin/python bench/catalogue_mlp_head_probe.py [--run-dir runs/knn]

The served bundle mixes a multinomial logistic regression on the pooled trunk features into articleType,
gated by the kind gate's catalogue probability (classification.feature_heads, docs/classifier.md "Feature
heads": test 0.8619 -> 0.8709 as the fit CLI scores a task alone). A one-hidden-layer network on the same
standardised features (dropout on its input as the only augmentation the cached features allow) is a
second, non-linear reading. Each configuration is trained on the 32,032 catalogue training thumbnails'
cached features (`--run-dir`, as `classification.fit_feature_heads` fills it), its mixing weight chosen, as
the fit CLI chooses, by articleType accuracy on the catalogue **validation** split, and read on the test
split, in place of the served regression and beside it. Photos and street crops are reported too (the gate
keeps a catalogue head off them; what is left shows). Writes bench/results/catalogue-mlp-head-<time>.json.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402  (before TensorFlow)
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from bench.results import write_report  # noqa: E402
from classification.evaluate import true_indices  # noqa: E402
from classification.feature_heads import FeatureHeads  # noqa: E402
from classification.fit_feature_heads import accuracy, parse_args as fit_arguments  # noqa: E402
from classification.inference import Classifier  # noqa: E402
from classification.train_embedding_head import bundle_features  # noqa: E402

CONFIGS = ({"hidden": 1024, "input_dropout": 0.2, "weight_decay": 1e-4},
           {"hidden": 1024, "input_dropout": 0.5, "weight_decay": 1e-4},
           {"hidden": 2048, "input_dropout": 0.5, "weight_decay": 1e-3})
WEIGHTS = (0.0, 0.2, 0.35, 0.5, 0.7, 1.0)
EPOCHS = 30


def train_mlp(x: np.ndarray, y: np.ndarray, classes: int, config: dict, seed: int = 0):
    """A standardised-input MLP (one hidden layer, dropout, AdamW, label smoothing 0.1, cosine schedule)."""
    torch.manual_seed(seed)
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    net = torch.nn.Sequential(torch.nn.Dropout(config["input_dropout"]), torch.nn.Linear(x.shape[1], config["hidden"]),
                              torch.nn.ReLU(), torch.nn.Dropout(0.5), torch.nn.Linear(config["hidden"], classes))
    inputs = torch.from_numpy((x - mean) / scale).float()
    targets = torch.from_numpy(y).long()
    optimiser = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=config["weight_decay"])
    steps = EPOCHS * ((len(x) + 255) // 256)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=1e-3, total_steps=steps)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    net.train()
    for _ in tqdm(range(EPOCHS), desc=f"mlp {config}", leave=False):
        order = torch.randperm(len(x))
        for start in range(0, len(x), 256):
            rows = order[start:start + 256]
            optimiser.zero_grad()
            loss_fn(net(inputs[rows]), targets[rows]).backward()
            optimiser.step()
            schedule.step()
    net.eval()

    def probabilities(features: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.softmax(net(torch.from_numpy((features - mean) / scale).float()), dim=1).numpy()
    return probabilities


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "fashion-lite0")
    parser.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "knn")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    started = time.perf_counter()
    fit_args = fit_arguments(["--bundle", str(args.bundle), "--run-dir", str(args.run_dir),
                              "--catalogue", str(args.data / "fashion-product-images-small"),
                              "--photos", str(args.data / "clothing-dataset"),
                              "--street", str(args.data / "clothing-co-parsing")])
    _, classifier, records, features, probs = bundle_features(fit_args)
    served = Classifier(args.bundle)
    heads = served.feature_heads
    without = FeatureHeads(tuple(h for h in heads.heads if h.task != "articleType"), heads.gate, heads.label_heads)
    voted = Classifier(args.bundle, feature_heads=False)
    base = {key: without.mix(voted.voted(features[key], probs[key]), features[key])
            for key in features if key[1] != "train"}
    as_served = {key: heads.mix(voted.voted(features[key], probs[key]), features[key])["articleType"] for key in base}
    catalogue_share = {key: heads.gate.catalogue_probability(features[key])[:, None] for key in base}
    truth = {part: true_indices(records["catalogue", part], classifier, "articleType") for part in ("train", "val", "test")}
    classes = classifier.taxonomy.num_classes("articleType")
    names = classifier.taxonomy.labels["articleType"]

    def group_accuracy(kind: str, article_probs: np.ndarray) -> float:
        rows = records[kind, "val"]
        return round(float(np.mean([names[i] in r.allowed["articleType"]
                                    for i, r in zip(article_probs.argmax(axis=1), rows)])), 4)

    report = {"bundle": str(args.bundle), "served regression": {
        "catalogue/val": accuracy(truth["val"], as_served["catalogue", "val"]),
        "catalogue/test": accuracy(truth["test"], as_served["catalogue", "test"]),
        "without it": {"catalogue/val": accuracy(truth["val"], base["catalogue", "val"]["articleType"]),
                       "catalogue/test": accuracy(truth["test"], base["catalogue", "test"]["articleType"])}},
        "configs": []}
    for config in CONFIGS:
        mlp = train_mlp(features["catalogue", "train"], truth["train"], classes, config)
        readings = {key: mlp(features[key]) for key in base}
        rows = []
        for replace in (True, False):  # in place of the served regression, or mixed after it
            start = {key: (base[key]["articleType"] if replace else as_served[key]) for key in base}
            for w in WEIGHTS:
                mixed = {key: (1 - w * catalogue_share[key]) * start[key] + w * catalogue_share[key] * readings[key]
                         for key in base}
                rows.append({"in_place_of_the_regression": replace, "weight": w,
                             "catalogue/val": accuracy(truth["val"], mixed["catalogue", "val"]),
                             "catalogue/test": accuracy(truth["test"], mixed["catalogue", "test"]),
                             "mixed": mixed})
        best = max(rows, key=lambda r: (r["catalogue/val"], -r["weight"]))
        report["configs"].append({"config": config, "alone": {
            "catalogue/val": accuracy(truth["val"], readings["catalogue", "val"]),
            "catalogue/test": accuracy(truth["test"], readings["catalogue", "test"])},
            "chosen on validation": {k: v for k, v in best.items() if k != "mixed"},
            "candidates": [{k: v for k, v in r.items() if k != "mixed"} for r in rows]})
        report["configs"][-1]["chosen, photo kinds (argmax in the label's group, over images)"] = {
            f"{kind}/val": {"served": group_accuracy(kind, as_served[kind, "val"]),
                            "chosen": group_accuracy(kind, best["mixed"][kind, "val"])} for kind in ("photo", "street")}
        print(config, report["configs"][-1]["alone"], report["configs"][-1]["chosen on validation"], flush=True)
    report["seconds"] = round(time.perf_counter() - started, 1)
    write_report("catalogue-mlp-head", report)
    print(report["served regression"])
    return report


if __name__ == "__main__":
    main()
