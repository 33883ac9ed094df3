"""Evaluate a classifier bundle on the three kinds of image it serves.

    python -m classification.evaluate --bundle models/fashion-lite0 \
        --catalogue ../shared/datasets/fashion-product-images-small \
        --photos ../shared/datasets/clothing-dataset --street ../shared/datasets/clothing-co-parsing

- catalogue thumbnails: every task against `styles.csv` (the bundle's test split unless --all-records);
- phone photos of garments (a label map turns their labels into allowed sets): articleType-group
  accuracy (the decoded articleType is one the label allows) as a mean over labels, and the
  masterCategory accuracy; the bundle's validation senders unless --all-records;
- garment crops of street photos, scored the same way; the bundle's validation photos likewise.

Hierarchy levels are scored on the jointly decoded path, as served. Every headline figure comes with
its 95% bootstrap interval (classification.intervals), and every tag's confidence is checked
against how often it is right (classification.confidence: per minimum confidence, the share of images
that reach it and their accuracy). Writes metrics.json, report.md (per-label tables), confusion
matrices, a reliability diagram and a PNG grid of each kind's most confident mistakes into --out;
--update-manifest stores the summary in the bundle's manifest.
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from . import runtime  # noqa: F401  (must precede keras)
from .catalogue import read_catalogue
from .confidence import confidence_report, confidence_summary
from .data import load_images
from .inference import Classifier
from .intervals import accuracy_interval, interval_name, mean_over_labels_interval
from .label_map import LabelMap
from .metrics import PHOTO_KIND_FIGURES, confusion, task_metrics
from .photo_datasets import read_labelled_photos, read_street_crops
from .plots import confusion_matrix_png, image_grid, reliability_png
from .records import LabelledImage, from_catalogue
from .taxonomy import TASKS, Taxonomy

CONFUSION_TASKS = ("masterCategory", "subCategory")
LABEL_MAPS = Path(__file__).parent / "label_maps"
KIND_TITLES = {"catalogue": "catalogue thumbnails", "photo": "phone photos of garments",
               "street": "garment crops of street photos"}
MISTAKES_SHOWN = 24
GARMENT_KINDS = frozenset({"street"})  # crops cut out of photos: read as the pipeline reads its detections


def true_indices(records: Sequence[LabelledImage], classifier: Classifier, task: str) -> np.ndarray:
    """-1: label missing; -2: a label the bundle has never seen (always counted as an error)."""
    out = []
    for record in records:
        label = record.label(task)
        index = classifier.taxonomy.index(task, label)
        out.append(-1 if not label else (index if index >= 0 else -2))
    return np.asarray(out, dtype=np.int64)


def decoded_indices(classifier: Classifier, described: Sequence[dict], task: str) -> np.ndarray:
    """Each image's decoded label of `task` (Classifier.describe) as its index in the taxonomy."""
    lookup = {name: i for i, name in enumerate(classifier.taxonomy.labels[task])}
    return np.asarray([lookup[d[task]["label"]] for d in described], dtype=np.int64)


def predict(classifier: Classifier, records: Sequence[LabelledImage], images: Sequence[np.ndarray] | None,
            garments: bool = False):
    """`garments`: the records are garment crops, read at the size the pipeline reads detections."""
    if images is None:
        images = load_images(records, desc="evaluating: decoding")
    probs = classifier.predict_proba(images, garments=garments)
    return images, probs, classifier.describe(probs)


def evaluate_catalogue(classifier: Classifier, records: Sequence[LabelledImage], images=None,
                       out_dir: Path | None = None) -> dict:
    """Every task against single labels (catalogue rows)."""
    images, probs, described = predict(classifier, records, images)
    report = {"kind": "catalogue", "images": len(records), "tasks": {}}
    wrong = np.zeros(len(records), bool)
    for task in TASKS:
        labels = classifier.taxonomy.labels[task]
        pred = decoded_indices(classifier, described, task)
        true = true_indices(records, classifier, task)
        report["tasks"][task] = task_metrics(true, pred, probs[task], labels)
        if (true != -1).any():
            known = true != -1
            report["tasks"][task][interval_name("accuracy")] = accuracy_interval((true == pred)[known])
            confidence = np.asarray([d[task]["confidence"] for d in described])
            report["tasks"][task]["confidence"] = confidence_report(confidence[known], (true == pred)[known])
        if task == "articleType":
            wrong = (true != -1) & (true != pred)
        if out_dir is not None and task in CONFUSION_TASKS:
            confusion_matrix_png(confusion(true, pred, len(labels)), labels, task, out_dir / f"confusion_{task}.png")
    if out_dir is not None:
        _mistakes_png(records, images, described, wrong, "catalogue", out_dir)
    return report


def evaluate_allowed_sets(classifier: Classifier, records: Sequence[LabelledImage], kind: str, images=None,
                          out_dir: Path | None = None) -> dict:
    """Articletype-group and masterCategory accuracy against each record's allowed labels."""
    images, _, described = predict(classifier, records, images, garments=kind in GARMENT_KINDS)
    report, group_ok, master_ok = allowed_set_scores([r.allowed for r in records], [r.source_label for r in records],
                                                     described, intervals=True)
    # A photo's label allows a set of articleTypes: its articleType counts as right inside that set.
    report["confidence"] = {task: confidence_report(np.asarray([d[task]["confidence"] for d in described]), hits)
                            for task, hits in (("articleType", group_ok), ("masterCategory", master_ok))}
    if out_dir is not None:
        _mistakes_png(records, images, described, ~group_ok, kind, out_dir)
    return {"kind": kind, **report}


def allowed_set_scores(allowed: Sequence[Mapping[str, Sequence[str]]], source_labels: Sequence[str],
                       described: Sequence[dict], intervals: bool = False) -> tuple[dict, np.ndarray, np.ndarray]:
    """Each image's decoded tags against the labels its source label allows: the report's figures (per
    label and overall; with `intervals`, the headline figures' 95% bootstrap intervals) and the per-image
    articleType-group and masterCategory hits."""
    group_ok = np.asarray([d["articleType"]["label"] in a["articleType"] for a, d in zip(allowed, described)], bool)
    master_ok = np.asarray([d["masterCategory"]["label"] in a["masterCategory"] for a, d in zip(allowed, described)], bool)
    per_label = {}
    for label in sorted(set(source_labels)):
        rows = [i for i, source in enumerate(source_labels) if source == label]
        predicted = Counter(described[i]["articleType"]["label"] for i in rows)
        per_label[label] = {"support": len(rows), "group_accuracy": float(group_ok[rows].mean()),
                            "masterCategory_accuracy": float(master_ok[rows].mean()),
                            "predicted": [f"{name} ({n})" for name, n in predicted.most_common(3)]}
    report = {
        "images": len(described), "labels": len(per_label),
        "articleType_group_accuracy": float(np.mean([m["group_accuracy"] for m in per_label.values()])) if per_label else None,
        "articleType_group_accuracy_micro": float(group_ok.mean()) if len(described) else None,
        "masterCategory_accuracy": float(master_ok.mean()) if len(described) else None,
        "masterCategory_accuracy_mean_over_labels":
            float(np.mean([m["masterCategory_accuracy"] for m in per_label.values()])) if per_label else None,
        "per_label": per_label,
    }
    if intervals and len(described):
        report |= {interval_name("articleType_group_accuracy"): mean_over_labels_interval(group_ok, source_labels),
                   interval_name("articleType_group_accuracy_micro"): accuracy_interval(group_ok),
                   interval_name("masterCategory_accuracy"): accuracy_interval(master_ok)}
    return report, group_ok, master_ok


def _mistakes_png(records, images, described, wrong, kind: str, out_dir: Path) -> None:
    rows = [i for i in np.flatnonzero(wrong)]
    rows.sort(key=lambda i: -described[i]["category_path_confidence"])
    rows = rows[:MISTAKES_SHOWN]
    if not rows:
        return
    captions = [f"{records[i].source_label or records[i].label('articleType')}\n-> {described[i]['articleType']['label']}"
                f" ({described[i]['category_path_confidence']:.2f})" for i in rows]
    image_grid([images[i] for i in rows], captions, f"Most confident articleType mistakes: {KIND_TITLES[kind]}"
               " (true -> predicted, path confidence)", out_dir / f"mistakes_{kind}.png")


def evaluate_kinds(classifier: Classifier, records: Mapping[str, Sequence[LabelledImage]],
                   out_dir: Path | None = None) -> dict:
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    reports = {}
    for kind, kind_records in records.items():
        if not kind_records:
            continue
        if kind == "catalogue":
            reports[kind] = evaluate_catalogue(classifier, kind_records, out_dir=out_dir)
        else:
            reports[kind] = evaluate_allowed_sets(classifier, kind_records, kind, out_dir=out_dir)
    if out_dir is not None:
        (out_dir / "metrics.json").write_text(json.dumps(reports, indent=1) + "\n")
        (out_dir / "report.md").write_text(markdown_report(reports, classifier))
        reliability_png(confidence_reports(reports), out_dir / "reliability.png")
    return reports


def confidence_reports(reports: Mapping[str, dict]) -> dict:
    """kind -> task -> confidence report (classification.confidence), from the kinds' reports."""
    out = {}
    for kind, report in reports.items():
        by_task = ({t: m["confidence"] for t, m in report["tasks"].items() if "confidence" in m}
                   if kind == "catalogue" else report.get("confidence", {}))
        if by_task:
            out[kind] = by_task
    return out


def confidence_summaries(reports: Mapping[str, dict]) -> dict:
    """The manifest's `metrics.confidence`: kind -> task -> calibration error and, per minimum
    confidence, [share of images, accuracy among them]."""
    return {kind: {task: confidence_summary(r) for task, r in by_task.items()}
            for kind, by_task in confidence_reports(reports).items()}


def summary(reports: Mapping[str, dict]) -> dict:
    """The figures a manifest and the README quote, per kind of image."""
    out = {}
    for kind, report in reports.items():
        if kind == "catalogue":
            out[kind] = {"images": report["images"],
                         **{t: round(m["accuracy"], 4) for t, m in report["tasks"].items() if "accuracy" in m}}
        else:
            out[kind] = {"images": report["images"], "labels": report["labels"],
                         **{k: round(report[k], 4) for k in PHOTO_KIND_FIGURES}}
    return out


def intervals_summary(reports: Mapping[str, dict]) -> dict:
    """kind -> figure -> [low, high]: the 95% bootstrap interval of each figure `summary` quotes."""
    out = {}
    for kind, report in reports.items():
        if kind == "catalogue":
            out[kind] = {t: m[interval_name("accuracy")] for t, m in report["tasks"].items() if interval_name("accuracy") in m}
        else:
            out[kind] = {k: report[interval_name(k)] for k in PHOTO_KIND_FIGURES if interval_name(k) in report}
    return out


def format_table(reports: Mapping[str, dict]) -> str:
    lines = []
    for kind, figures in summary(reports).items():
        lines.append(f"{KIND_TITLES[kind]} ({figures['images']} images): "
                     + ", ".join(f"{k} {v:.4f}" for k, v in figures.items() if k not in ("images", "labels")))
    return "\n".join(lines)


def mirror_view_sentence(flip_average: bool | float) -> str:
    if flip_average is True:
        return "Each image's outputs averaged with its mirror image's."
    if flip_average:
        return (f"Outputs averaged with the mirror image's for images whose top articleType probability is "
                f"under {flip_average:g}.")
    return "One view of each image (no mirror averaging)."


def neighbour_vote_sentence(classifier: Classifier) -> str:
    vote = classifier.neighbour_vote
    if vote is None:
        return "The model's own outputs (no neighbour vote)."
    return (f"Outputs mixed with the neighbour vote `{vote.version}` (k {vote.k}, temperature {vote.temperature:g}, "
            f"weight {vote.weight:g}) of {vote.row_count} training images.")


def feature_heads_sentence(classifier: Classifier) -> str:
    heads = classifier.feature_heads
    if heads is None:
        return ""
    return (f"Then mixed with the feature heads `{heads.version}` ("
            + ", ".join(f"{h.task}: weight {h.weight:g}" + (" x the kind gate's catalogue probability" if h.gated else "")
                        for h in heads.heads)
            + "".join(f", articleType with the {h.kind} source labels' head (weight {h.weight:g} x the kind gate's "
                      f"{h.kind} probability; chosen on the {h.kind} validation split, so those figures are not "
                      "held out for it)" for h in heads.label_heads) + ").")


def _interval_text(interval) -> str:
    return f"{interval[0]:.4f}-{interval[1]:.4f}" if interval else "-"


def markdown_report(reports: Mapping[str, dict], classifier: Classifier) -> str:
    out = [f"# Evaluation of `{classifier.bundle_dir.name}` ({classifier.manifest.get('version', '')})", "",
           mirror_view_sentence(classifier.flip_average), neighbour_vote_sentence(classifier),
           feature_heads_sentence(classifier), ""]
    catalogue = reports.get("catalogue")
    if catalogue:
        out += [f"## Catalogue thumbnails ({catalogue['images']} images)", "",
                "| task | support | accuracy | 95% interval | top-5 | macro-F1 |", "|---|---:|---:|---:|---:|---:|"]
        out += [f"| {t} | {m['support']} | {m.get('accuracy', float('nan')):.4f} | {_interval_text(m.get('accuracy_interval_95'))}"
                f" | {m.get('top5_accuracy', float('nan')):.4f} | {m.get('macro_f1', float('nan')):.4f} |"
                for t, m in catalogue["tasks"].items()]
    for kind in ("photo", "street"):
        report = reports.get(kind)
        if not report:
            continue
        read_at = classifier.garment_input_size if kind in GARMENT_KINDS else classifier.input_size
        out += ["", f"## {KIND_TITLES[kind].capitalize()} ({report['images']} images, {report['labels']} labels)", "",
                f"Read at {read_at[0]}x{read_at[1]}" + (" (the size the pipeline reads detected garments at)."
                                                        if kind in GARMENT_KINDS else "."), "",
                f"articleType group accuracy, mean over labels: **{report['articleType_group_accuracy']:.4f}** "
                f"(95%: {_interval_text(report.get('articleType_group_accuracy_interval_95'))}; over images: "
                f"{report['articleType_group_accuracy_micro']:.4f}, "
                f"95%: {_interval_text(report.get('articleType_group_accuracy_micro_interval_95'))}); masterCategory accuracy: "
                f"**{report['masterCategory_accuracy']:.4f}** (95%: {_interval_text(report.get('masterCategory_accuracy_interval_95'))})."
                " Intervals: 95% bootstrap (classification.intervals; over labels, each label's images resampled).", "",
                "| label | support | articleType group | masterCategory | most predicted articleTypes |",
                "|---|---:|---:|---:|---|"]
        for label, m in sorted(report["per_label"].items(), key=lambda kv: -kv[1]["support"]):
            out.append(f"| {label} | {m['support']} | {m['group_accuracy']:.3f} | {m['masterCategory_accuracy']:.3f}"
                       f" | {', '.join(m['predicted'])} |")
    out += confidence_markdown(confidence_reports(reports))
    if catalogue:
        for task, metrics in catalogue["tasks"].items():
            out += ["", f"## Catalogue: {task} per class", "", "| class | precision | recall | F1 | support |",
                    "|---|---:|---:|---:|---:|"]
            for name, c in sorted(metrics.get("per_class", {}).items(), key=lambda kv: -kv[1]["support"]):
                out.append(f"| {name} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} | {c['support']} |")
    return "\n".join(out) + "\n"


def confidence_markdown(by_kind: Mapping[str, Mapping[str, dict]]) -> list[str]:
    """The report's table of how often a tag is right at each minimum confidence, per kind and task."""
    if not by_kind:
        return []
    minimums = [row["min_confidence"] for row in next(iter(next(iter(by_kind.values())).values()))["thresholds"]]
    out = ["", "## Confidence: how often a tag is right when it is at least that sure", "",
           "Each cell: accuracy of the tags given with at least that confidence (share of the images that get one). "
           "A filter such as `/v1/items?min_confidence=0.9` keeps those. On the photo kinds an articleType counts "
           "as right inside its label's allowed set. `reliability.png` draws the bins.", "",
           "| kind | task | accuracy | mean confidence | calibration error | "
           + " | ".join(f">= {m:g}" for m in minimums) + " |",
           "|---|---|---:|---:|---:|" + "---:|" * len(minimums)]
    for kind, by_task in by_kind.items():
        for task, report in by_task.items():
            cells = [f"{row['accuracy']:.3f} ({row['share']:.2f})" if row["accuracy"] is not None else "- (0)"
                     for row in report["thresholds"]]
            out.append(f"| {KIND_TITLES[kind]} | {task} | {report['accuracy']:.4f} | {report['mean_confidence']:.4f} | "
                       f"{report['expected_calibration_error']:.4f} | " + " | ".join(cells) + " |")
    return out


def evaluate_bundle(bundle_dir: Path, records: Mapping[str, Sequence[LabelledImage]], out_dir: Path | None = None,
                    update_manifest: bool = False, batch_size: int = 128,
                    input_size: tuple[int, int] | None = None, flip_average: bool | float | None = None,
                    neighbour_vote: bool = True) -> dict:
    """Reports by kind (printed as a table); with `update_manifest` their summary goes into the manifest,
    with the way they were measured (with or without the mirror view), which is then how the bundle serves.
    `neighbour_vote=False` scores the model without the bundle's neighbour vote (never into the manifest)."""
    if update_manifest and not neighbour_vote:
        raise ValueError("the manifest keeps the figures of the bundle as it serves: with its neighbour vote")
    classifier = Classifier(bundle_dir, batch_size=batch_size, input_size=input_size, flip_average=flip_average,
                            neighbour_vote=neighbour_vote)
    reports = evaluate_kinds(classifier, records, out_dir or Path(bundle_dir) / "evaluation")
    print(format_table(reports))
    if update_manifest:
        manifest = json.loads((Path(bundle_dir) / "manifest.json").read_text())
        # (keeping what else the bundle says about serving: the size garments are read at)
        manifest["inference"] = {**(manifest.get("inference") or {}), "flip_average": classifier.flip_average,
                                 "neighbour_vote": classifier.neighbour_vote.version if classifier.neighbour_vote else None,
                                 "feature_heads": classifier.feature_heads.version if classifier.feature_heads else None,
                                 "thumbnail_specialist": (classifier.specialist_settings.version
                                                          if classifier.specialist else None)}
        manifest["metrics"] = {**summary(reports), "intervals_95": intervals_summary(reports),
                               "confidence": confidence_summaries(reports), "report": "evaluation/report.md",
                               "definitions": {
                                   "catalogue": "accuracy per task on the catalogue test split (all classes); "
                                                "hierarchy levels from the jointly decoded path",
                                   "photo/street": "articleType_group_accuracy: the decoded articleType is one the "
                                                   "image's label allows (label map), mean over labels; "
                                                   "masterCategory_accuracy over images; street crops read at "
                                                   f"{'x'.join(map(str, classifier.garment_input_size))} (the size "
                                                   "the pipeline reads detected garments at)",
                                   "intervals_95": "95% percentile bootstrap of each figure (2,000 resamples): "
                                                   "images drawn with replacement; for a mean over labels, each "
                                                   "label's images from its own (classification.intervals)",
                                   "confidence": "per kind and task, the expected calibration error (10 bins) and "
                                                 "per minimum confidence [share of images whose tag is at least "
                                                 "that sure, accuracy among them]; on photo kinds an articleType "
                                                 "is right inside its label's allowed set"}}
        (Path(bundle_dir) / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return reports


def _held_out(records: list[LabelledImage], split: dict | None, part: str) -> list[LabelledImage]:
    if split is None:
        return records
    ids = set(split[part])
    return [r for r in records if r.id in ids]


def held_out_records(bundle_dir: Path, catalogue: Path | None = None, photos: Path | None = None,
                     street: Path | None = None, photo_label_map: Path = LABEL_MAPS / "clothing-dataset.json",
                     street_label_map: Path = LABEL_MAPS / "clothing-co-parsing.json",
                     all_records: bool = False) -> dict[str, list[LabelledImage]]:
    """The records of each kind given, as the bundle's held-out split selects them (every record with
    `all_records`, or when the bundle has no split.json)."""
    taxonomy = Taxonomy.from_dict(json.loads((bundle_dir / "manifest.json").read_text())["taxonomy"])
    split_file = bundle_dir / "split.json"
    split = {} if all_records or not split_file.is_file() else json.loads(split_file.read_text())
    records = {}
    if catalogue:
        rows = from_catalogue(read_catalogue(catalogue).records)
        records["catalogue"] = _held_out(rows, split if "test" in split else None, "test")
    if photos:
        rows = read_labelled_photos(photos, LabelMap.load(photo_label_map), taxonomy)
        records["photo"] = _held_out(rows, split.get("photo"), "val")
    if street:
        rows = read_street_crops(street, LabelMap.load(street_label_map), taxonomy)
        records["street"] = _held_out(rows, split.get("street"), "val")
    return records


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--catalogue", "--data", dest="catalogue", type=Path, help="catalogue folder (styles.csv + images/)")
    parser.add_argument("--photos", type=Path, help="labelled phone photos (images.csv + images/)")
    parser.add_argument("--photo-label-map", type=Path, default=LABEL_MAPS / "clothing-dataset.json")
    parser.add_argument("--street", type=Path, help="Clothing Co-Parsing folder")
    parser.add_argument("--street-label-map", type=Path, default=LABEL_MAPS / "clothing-co-parsing.json")
    parser.add_argument("--all-records", action="store_true",
                        help="score every image of each folder, not only the bundle's held-out split "
                             "(for folders the bundle never trained on)")
    parser.add_argument("--out", type=Path, help="report folder (default: <bundle>/evaluation)")
    parser.add_argument("--update-manifest", action="store_true", help="store the summary in the bundle's manifest")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("HEIGHT", "WIDTH"),
                        help="run the bundle's weights at another input size (the accuracy/speed trade of a size)")
    parser.add_argument("--flip-average", action=argparse.BooleanOptionalAction, default=None,
                        help="average each image's outputs with its mirror image's (default: as the bundle's manifest "
                             "says); with --update-manifest the bundle then serves that way")
    parser.add_argument("--flip-below", type=float, metavar="CONFIDENCE",
                        help="the mirror view only for images whose top articleType probability is under "
                             "CONFIDENCE (bench/mirror_view_threshold.py measures the trade)")
    parser.add_argument("--no-neighbour-vote", dest="neighbour_vote", action="store_false",
                        help="score the model without the bundle's neighbour vote (not with --update-manifest)")
    args = parser.parse_args(argv)
    if args.update_manifest and not args.neighbour_vote:
        parser.error("--update-manifest keeps the figures of the bundle as it serves: drop --no-neighbour-vote")
    if args.input_size and args.update_manifest:
        parser.error("--update-manifest records the bundle's own input size; drop --input-size")
    if not (args.catalogue or args.photos or args.street):
        parser.error("give at least one of --catalogue, --photos, --street")
    if args.flip_below is not None:
        if args.flip_average is False:
            parser.error("--flip-below asks for the mirror view: drop --no-flip-average")
        args.flip_average = args.flip_below
    records = held_out_records(args.bundle, args.catalogue, args.photos, args.street, args.photo_label_map,
                               args.street_label_map, args.all_records)
    return evaluate_bundle(args.bundle, records, args.out, args.update_manifest, args.batch_size,
                           tuple(args.input_size) if args.input_size else None, args.flip_average,
                           args.neighbour_vote)


if __name__ == "__main__":
    main()
