"""Would a phone-photo source-label head serve, fitted on features made the way the service makes them?

    nice -n 15 .venv/bin/python bench/photo_label_head_probe.py

The served bundle has a source-label head for street crops only: the phone photos' head, fitted by
`classification.fit_feature_heads` on cached features (photos shrunk as in training), gained there and lost on
the full-size photos the service classifies (docs/classifier.md, "Feature heads"). This probe fits it on the
pooled features of the training senders' photos **as served** (decoded at full size, letterboxed, the mirror
view: `Classifier.embedding_inputs`), mixes it into the served probabilities of the validation senders' photos
as `FeatureHeads.mix` does (weight x the gate's probability of a phone photo), and decodes the path jointly.
Two ways to spread a label's probability over articleTypes:

- `all`: as served for street crops (`label_mass`): every articleType's mass comes from the labels;
- `covered`: only the mass the served probabilities already put on articleTypes some label allows is
  redistributed; the rest (a bag, a watch: no phone-photo label covers them) keeps its probability, so a photo
  of something the 17 labels do not name is not pulled towards clothes.

Every (C, weight, spread) is scored on the validation senders (articleType group, mean over labels) and chosen
cross-half as the fit CLI chooses (senders halved at random six times, seed 0; chosen on one half, scored on
the other, both ways): among every candidate, and among each spread's alone. Writes bench/results/photo-label-head-<time>.json and prints Markdown.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402,F401  (before TensorFlow)
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from bench.results import write_report  # noqa: E402
from classification.data import load_images  # noqa: E402
from classification.evaluate import LABEL_MAPS  # noqa: E402
from classification.feature_heads import fit_head, label_mass  # noqa: E402
from classification.inference import Classifier  # noqa: E402
from classification.label_map import LabelMap  # noqa: E402
from classification.photo_datasets import read_labelled_photos  # noqa: E402

PHOTOS = ROOT.parent / "shared" / "datasets" / "clothing-dataset"
C_GRID = (0.01, 0.1, 1.0)
WEIGHTS = (0.0, 0.2, 0.35, 0.5, 0.7, 1.0)
SPREADS = ("all", "covered")
HALVINGS = 6


def covered_mass(label_probs: np.ndarray, allowed: np.ndarray, article_probs: np.ndarray) -> np.ndarray:
    """label_mass on the articleTypes some label allows, scaled to the mass the served probabilities put
    there; the other articleTypes keep theirs."""
    covered = allowed.any(axis=0)
    inside = article_probs * covered
    mass = inside.sum(axis=1, keepdims=True)
    spread = label_mass(label_probs, allowed, inside / np.maximum(mass, 1e-9))
    return np.where(covered, spread * mass, article_probs).astype(np.float32)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "fashion-lite0")
    parser.add_argument("--data", type=Path, default=PHOTOS)
    args = parser.parse_args(argv)
    started = time.perf_counter()

    classifier = Classifier(args.bundle)
    taxonomy = classifier.taxonomy
    split = json.loads((args.bundle / "split.json").read_text())["photo"]
    records = read_labelled_photos(args.data, LabelMap.load(LABEL_MAPS / "clothing-dataset.json"), taxonomy)
    parts = {part: [r for r in records if r.id in set(split[part])] for part in ("train", "val")}
    features, served = {}, {}
    for part, rows in parts.items():
        images = load_images(rows, desc=f"decoding {part}")
        chunks = [classifier.embedding_inputs(images[i:i + 256]) for i in tqdm(range(0, len(images), 256),
                                                                              desc=f"features {part}")]
        features[part] = np.concatenate([f for f, _ in chunks])
        model = {task: np.concatenate([p[task] for _, p in chunks]) for task in chunks[0][1]}
        served[part] = classifier.voted(features[part], model)
    gate = classifier.feature_heads.gate
    photo_share = gate.probability(features["val"], "photo")[:, None]

    labels = tuple(sorted({r.source_label for r in parts["train"]}))
    one_of_each = {r.source_label: r for r in parts["train"]}
    article_index = {name: i for i, name in enumerate(taxonomy.labels["articleType"])}
    allowed = np.zeros((len(labels), len(article_index)), bool)
    for i, label in enumerate(labels):
        allowed[i, [article_index[a] for a in one_of_each[label].allowed["articleType"]]] = True
    truth = np.asarray([labels.index(r.source_label) for r in parts["train"]])
    val = parts["val"]
    val_labels = [r.source_label for r in val]
    val_allowed = [set(r.allowed["articleType"]) for r in val]

    def hits(article_probs: np.ndarray) -> np.ndarray:
        described = classifier.describe(dict(served["val"], articleType=article_probs))
        return np.asarray([d["articleType"]["label"] in a for d, a in zip(described, val_allowed)])

    candidates = {("-", 0.0, "-"): hits(served["val"]["articleType"])}
    for c in tqdm(C_GRID, desc="C"):
        q = fit_head("photo", features["train"], truth, len(labels), c, 1.0).probabilities(features["val"])
        base = served["val"]["articleType"]
        for spread in SPREADS:
            h = label_mass(q, allowed, base) if spread == "all" else covered_mass(q, allowed, base)
            for w in WEIGHTS[1:]:
                candidates[(c, w, spread)] = hits((1 - w * photo_share) * base + w * photo_share * h)

    def mean_over_labels(hit: np.ndarray, rows: np.ndarray) -> float:
        by_label = {}
        for i in rows:
            by_label.setdefault(val_labels[i], []).append(hit[i])
        return float(np.mean([np.mean(v) for v in by_label.values()]))

    everyone = np.arange(len(val))
    table = {f"C {c} w {w} {spread}": {"group_mean_over_labels": mean_over_labels(hit, everyone),
                                       "group_over_photos": float(hit.mean())}
             for (c, w, spread), hit in candidates.items()}
    senders = sorted({r.group for r in val})

    def cross_half(pool: list) -> dict:
        rng, runs = np.random.default_rng(0), []
        for _ in range(HALVINGS):
            order = rng.permutation(len(senders))
            half_of = {senders[g]: int(i < len(senders) // 2) for i, g in enumerate(order)}
            halves = [np.flatnonzero([half_of[r.group] == h for r in val]) for h in (0, 1)]
            for choose, score in ((0, 1), (1, 0)):
                best = max(pool, key=lambda k: (round(mean_over_labels(candidates[k], halves[choose]), 6), -k[1]))
                runs.append({"chosen": " ".join(map(str, best)),
                             "before": mean_over_labels(candidates[("-", 0.0, "-")], halves[score]),
                             "after": mean_over_labels(candidates[best], halves[score])})
        return {"halvings": runs, "before": float(np.mean([h["before"] for h in runs])),
                "after": float(np.mean([h["after"] for h in runs]))}
    report = {"bundle": str(args.bundle), "train_photos": len(parts["train"]), "val_photos": len(val),
              "labels": len(labels), "seconds": round(time.perf_counter() - started, 1),
              "mean_photo_probability_of_the_gate": float(photo_share.mean()),
              "candidates": table,
              "cross_half": {"either spread": cross_half(list(candidates)),
                             **{spread: cross_half([k for k in candidates if k[2] in (spread, "-")])
                                for spread in SPREADS}}}
    write_report("photo-label-head", report)
    print(markdown(report))
    return report


def markdown(report: dict) -> str:
    lines = [f"{report['val_photos']} validation-sender phone photos, head fitted on {report['train_photos']} "
             f"({report['seconds']} s)", "", "| candidate | group, mean over labels / over photos |", "|---|---:|"]
    for name, row in report["candidates"].items():
        lines.append(f"| {name} | {row['group_mean_over_labels']:.4f} / {row['group_over_photos']:.4f} |")
    for pool, cross in report["cross_half"].items():
        lines += ["", f"cross-half, {pool}: chosen {[h['chosen'] for h in cross['halvings']]}; "
                      f"{cross['before']:.4f} -> {cross['after']:.4f}"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
