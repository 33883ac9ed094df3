"""Evaluate a classifier bundle on any catalogue folder in the Kaggle layout.

    python -m classification.evaluate --bundle models/fashion-vgg19 --data path/to/catalogue [--split test]

Prints a table; writes metrics.json, report.md and confusion-matrix PNGs (masterCategory,
subCategory) into --out. Hierarchy levels are scored on the jointly decoded path, as served.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from . import runtime  # noqa: F401  (must precede keras)
from .catalogue import CatalogueRecord, read_catalogue
from .data import load_images
from .inference import Classifier
from .metrics import confusion, task_metrics
from .plots import confusion_matrix_png
from .taxonomy import TASKS

CONFUSION_TASKS = ("masterCategory", "subCategory")


def true_indices(records: Sequence[CatalogueRecord], classifier: Classifier, task: str) -> np.ndarray:
    """-1: label missing; -2: a label the bundle has never seen (always counted as an error)."""
    out = []
    for record in records:
        label = record.get(task)
        index = classifier.taxonomy.index(task, label)
        out.append(-1 if not label else (index if index >= 0 else -2))
    return np.asarray(out, dtype=np.int64)


def evaluate_records(classifier: Classifier, records: Sequence[CatalogueRecord], images: np.ndarray | None = None,
                     out_dir: Path | None = None) -> dict:
    if images is None:
        images = load_images(records, classifier.input_size, desc="evaluating: decoding")
    probs = classifier.predict_proba_preprocessed(images)
    described = classifier.describe(probs)
    report = {"images": len(records), "tasks": {}}
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    for task in TASKS:
        labels = classifier.taxonomy.labels[task]
        lookup = {name: i for i, name in enumerate(labels)}
        pred = np.asarray([lookup[r[task]["label"]] for r in described], dtype=np.int64)
        true = true_indices(records, classifier, task)
        report["tasks"][task] = task_metrics(true, pred, probs[task], labels)
        if out_dir is not None and task in CONFUSION_TASKS:
            matrix = confusion(true, pred, len(labels))
            confusion_matrix_png(matrix, labels, task, out_dir / f"confusion_{task}.png")
    if out_dir is not None:
        (out_dir / "metrics.json").write_text(json.dumps(report, indent=1) + "\n")
        (out_dir / "report.md").write_text(markdown_report(report, classifier))
    return report


def summary_rows(report: dict) -> list[tuple]:
    return [(task, m["support"], m.get("accuracy", float("nan")), m.get("top5_accuracy", float("nan")),
             m.get("macro_f1", float("nan"))) for task, m in report["tasks"].items()]


def format_table(report: dict) -> str:
    lines = [f"{'task':<16}{'support':>9}{'accuracy':>10}{'top-5':>8}{'macro-F1':>10}"]
    for task, support, acc, top5, f1 in summary_rows(report):
        lines.append(f"{task:<16}{support:>9}{acc:>10.4f}{top5:>8.4f}{f1:>10.4f}")
    return "\n".join(lines)


def markdown_report(report: dict, classifier: Classifier) -> str:
    out = [f"# Evaluation of `{classifier.bundle_dir.name}` on {report['images']} images", "",
           "| task | support | accuracy | top-5 | macro-F1 |", "|---|---:|---:|---:|---:|"]
    out += [f"| {t} | {s} | {a:.4f} | {t5:.4f} | {f:.4f} |" for t, s, a, t5, f in summary_rows(report)]
    for task, metrics in report["tasks"].items():
        out += ["", f"## {task}", "", "| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
        for name, c in sorted(metrics.get("per_class", {}).items(), key=lambda kv: -kv[1]["support"]):
            out.append(f"| {name} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} | {c['support']} |")
    return "\n".join(out) + "\n"


def select_split(records: list[CatalogueRecord], bundle_dir: Path, split: str | None) -> list[CatalogueRecord]:
    if not split:
        return records
    ids = set(json.loads((bundle_dir / "split.json").read_text())[split])
    return [r for r in records if r.id in ids]


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="catalogue folder (styles.csv + images/)")
    parser.add_argument("--split", choices=["train", "val", "test"],
                        help="only the ids of this split from the bundle's split.json (the training catalogue)")
    parser.add_argument("--out", type=Path, help="report folder (default: <bundle>/evaluation)")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)
    classifier = Classifier(args.bundle, batch_size=args.batch_size)
    records = select_split(read_catalogue(args.data).records, args.bundle, args.split)
    report = evaluate_records(classifier, records, out_dir=args.out or args.bundle / "evaluation")
    print(format_table(report))
    return report


if __name__ == "__main__":
    main()
