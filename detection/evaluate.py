"""COCO evaluation of a detector bundle with pycocotools: box AP, AP50, AP75, mask AP, per category;
the same class-agnostic (every class merged into "garment": was each garment found once?); detections
per photo against garments per photo and precision/recall at the serving (best-F1) threshold; and what
class-agnostic NMS does to all of these (off, and at IoU 0.5-0.8).

    python -m detection.evaluate --bundle models/ccp-maskrcnn-mobilenet --dataset ccp \
        --data ../shared/datasets/clothing-co-parsing --split val [--class-agnostic-nms 0.7] [--update-manifest]

Writes metrics.json, report.md and a PNG sheet of predictions drawn on a few images into --out.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchvision.ops import box_iou
from tqdm import tqdm

from common.images import load_rgb

from .inference import COMPUTE_DTYPES, Detector, kept_across_classes, suppress_across_classes
from .plots import prediction_sheet
from .records import READERS, DetectionRecord, encode_mask, to_coco


def coco_results(detector: Detector, records: Sequence[DetectionRecord]) -> tuple[list[dict], list, list[float]]:
    """COCO results of the model's per-class output (before class-agnostic NMS; `served` applies it)."""
    results, samples, seconds = [], [], []
    class_id = {name: i + 1 for i, name in enumerate(detector.classes)}
    for record in tqdm(records, desc="evaluating", leave=False):
        image = load_rgb(record.image_path)
        start = time.perf_counter()
        detections = detector.detect_per_class([image])[0]
        seconds.append(time.perf_counter() - start)
        if len(samples) < 6:
            samples.append((image, suppress_across_classes(detections, detector.class_agnostic_nms)))
        for d in detections:
            x1, y1, x2, y2 = d.box
            results.append({"image_id": record.image_id, "category_id": class_id[d.label], "score": d.score,
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "segmentation": encode_mask(d.mask)})
    return results, samples, seconds


def served(results: list[dict], iou: float | None) -> list[dict]:
    """The results that class-agnostic NMS at `iou` keeps, image by image (what Detector.detect returns)."""
    if iou is None:
        return list(results)
    by_image: dict[int, list[dict]] = {}
    for r in results:
        by_image.setdefault(r["image_id"], []).append(r)
    out = []
    for found in by_image.values():
        boxes = [[x, y, x + w, y + h] for x, y, w, h in (r["bbox"] for r in found)]
        out += [found[i] for i in kept_across_classes(boxes, [r["score"] for r in found], iou)]
    return out


def class_agnostic(ground_truth: dict, results: list[dict]) -> tuple[dict, list[dict]]:
    """Ground truth and results with every class merged into one, "garment": a garment counts as found
    when a box overlaps it, whatever its label (what a storefront needs)."""
    truth = {**ground_truth, "categories": [{"id": 1, "name": "garment", "supercategory": "garment"}],
             "annotations": [{**a, "category_id": 1} for a in ground_truth["annotations"]]}
    return truth, [{**r, "category_id": 1} for r in results]


def coco_eval(ground_truth: dict, results: list[dict], iou_types: Sequence[str] = ("bbox", "segm")) -> dict:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = ground_truth
        gt.createIndex()
    metrics = {}
    for iou_type in iou_types:
        prefix = {"bbox": "box", "segm": "mask"}[iou_type]
        if not results:
            metrics.update({f"{prefix}_AP": 0.0, f"{prefix}_AP50": 0.0, f"{prefix}_AP75": 0.0})
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            dt = gt.loadRes([dict(r) for r in results])
            evaluator = COCOeval(gt, dt, iou_type)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        stats = evaluator.stats
        metrics.update({f"{prefix}_AP": float(stats[0]), f"{prefix}_AP50": float(stats[1]), f"{prefix}_AP75": float(stats[2])})
        if iou_type == "bbox" and len(gt.cats) > 1:
            # precision: [iou, recall, category, area, max_dets]; area "all", 100 detections.
            precision = evaluator.eval["precision"][:, :, :, 0, -1]
            per_category = {}
            for k, cat_id in enumerate(evaluator.params.catIds):
                p = precision[:, :, k]
                per_category[gt.cats[cat_id]["name"]] = float(p[p > -1].mean()) if (p > -1).any() else None
            metrics["box_AP_per_category"] = per_category
    return metrics


THRESHOLDS = tuple(round(0.1 + 0.05 * i, 2) for i in range(17))  # 0.10 ... 0.90


def operating_points(ground_truth: dict, results: list[dict], iou: float = 0.5) -> list[dict]:
    """Precision, recall and F1 of the detections kept at each score threshold (what serving sees):
    a detection is right when it matches a not-yet-matched instance of its class at IoU >= `iou`,
    highest scores first (COCO's greedy matching)."""
    truth: dict[tuple[int, int], list[list[float]]] = {}
    for a in ground_truth["annotations"]:
        x, y, w, h = a["bbox"]
        truth.setdefault((a["image_id"], a["category_id"]), []).append([x, y, x + w, y + h])
    found: dict[tuple[int, int], list[tuple[float, list[float]]]] = {}
    for r in results:
        x, y, w, h = r["bbox"]
        found.setdefault((r["image_id"], r["category_id"]), []).append((r["score"], [x, y, x + w, y + h]))
    scored = []  # (score, correct) for every detection
    for key, detections in found.items():
        detections.sort(key=lambda d: -d[0])
        boxes = truth.get(key, [])
        ious = (box_iou(torch.tensor([d[1] for d in detections]), torch.tensor(boxes)).numpy()
                if boxes else np.zeros((len(detections), 0)))
        taken = np.zeros(len(boxes), dtype=bool)
        for row, (score, _) in enumerate(detections):
            candidates = np.where(~taken & (ious[row] >= iou))[0]
            if len(candidates):
                taken[candidates[np.argmax(ious[row][candidates])]] = True
            scored.append((score, bool(len(candidates))))
    total = len(ground_truth["annotations"])
    points = []
    for threshold in THRESHOLDS:
        kept = [correct for score, correct in scored if score >= threshold]
        right = sum(kept)
        precision = right / len(kept) if kept else 0.0
        recall = right / total if total else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        points.append({"threshold": threshold, "precision": round(precision, 4), "recall": round(recall, 4),
                       "f1": round(f1, 4), "detections_per_image": round(len(kept) / max(1, len(ground_truth["images"])), 2)})
    return points


def at_threshold(points: list[dict], threshold: float) -> dict:
    return next(p for p in points if p["threshold"] == threshold)


def serving_summary(ground_truth: dict, results: list[dict], threshold: float | None = None) -> dict:
    """Box AP (per class and class-agnostic) and, at the serving threshold (best F1, class must match,
    unless given), detections per photo against garments per photo and precision/recall both ways."""
    agnostic_truth, agnostic_results = class_agnostic(ground_truth, results)
    points = operating_points(ground_truth, results)
    threshold = threshold if threshold is not None else max(points, key=lambda p: (p["f1"], p["threshold"]))["threshold"]
    point, agnostic = at_threshold(points, threshold), at_threshold(operating_points(agnostic_truth, agnostic_results), threshold)
    per_class = coco_eval(ground_truth, results, ("bbox",))
    anywise = coco_eval(agnostic_truth, agnostic_results, ("bbox",))
    return {"box_AP": per_class["box_AP"], "box_AP50": per_class["box_AP50"],
            "agnostic_box_AP": anywise["box_AP"], "agnostic_box_AP50": anywise["box_AP50"],
            "threshold": threshold, "garments_per_image": round(len(ground_truth["annotations"]) / max(1, len(ground_truth["images"])), 2),
            "detections_per_image": point["detections_per_image"], "precision": point["precision"],
            "recall": point["recall"], "agnostic_precision": agnostic["precision"], "agnostic_recall": agnostic["recall"]}


def evaluate(detector: Detector, records: Sequence[DetectionRecord], out_dir: Path | None = None) -> dict:
    """Metrics of what the detector serves (with its class-agnostic NMS, if any), plus the same
    measured with that suppression off and on, so its effect on AP and per-photo precision shows."""
    ground_truth = to_coco(records, detector.classes)
    raw, samples, seconds = coco_results(detector, records)
    iou = detector.class_agnostic_nms
    results = served(raw, iou)
    transform = detector.model.transform
    agnostic_truth, agnostic_results = class_agnostic(ground_truth, results)
    agnostic = coco_eval(agnostic_truth, agnostic_results)
    metrics = {"images": len(records), "instances": len(ground_truth["annotations"]), "detections": len(results),
               "input_size": {"min_size": transform.min_size[0], "max_size": transform.max_size},
               # Model time per image (batch 1, this machine's threads), median: the speed side of the trade.
               "detect_ms_median": round(statistics.median(seconds) * 1000, 1) if seconds else None,
               "class_agnostic_nms": iou,
               "compute_dtype": detector.compute_dtype,
               "proposals": detector.model.rpn.post_nms_top_n(),  # region proposals kept per image (eval mode)
               **coco_eval(ground_truth, results),
               **{f"agnostic_{k}": v for k, v in agnostic.items()}}
    points = operating_points(ground_truth, results)
    best = max(points, key=lambda p: (p["f1"], p["threshold"]))
    metrics["operating_points_iou50"] = points
    metrics["agnostic_operating_points_iou50"] = operating_points(agnostic_truth, agnostic_results)
    metrics["best_f1_threshold"] = best["threshold"]
    metrics["at_serving_threshold"] = serving_summary(ground_truth, results, best["threshold"])
    # What class-agnostic NMS does: off, and at a few IoUs (each at its own best-F1 threshold).
    metrics["agnostic_nms_effect"] = {"off": serving_summary(ground_truth, raw),
                                      **{str(t): serving_summary(ground_truth, served(raw, t)) for t in AGNOSTIC_NMS_IOUS}}
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        (out_dir / "report.md").write_text(report(metrics, points, best["threshold"]))
        prediction_sheet(samples, out_dir / "predictions.png")
    return metrics


AGNOSTIC_NMS_IOUS = (0.5, 0.6, 0.7, 0.8)


def report(metrics: dict, points: list[dict], best: float) -> str:
    size = metrics["input_size"]
    lines = [f"# Detector evaluation: {metrics['images']} images, {metrics['instances']} instances", "",
             f"Input: shorter side {size['min_size']}, longer side at most {size['max_size']}; "
             f"median detector time {metrics['detect_ms_median']} ms per image; "
             f"class-agnostic NMS: {metrics['class_agnostic_nms'] or 'off'}; "
             f"compute dtype: {metrics.get('compute_dtype', 'float32')}.", "",
             "| metric | value |", "|---|---:|"]
    lines += [f"| {k} | {metrics[k]:.4f} |" for k in ("box_AP", "box_AP50", "box_AP75", "mask_AP", "mask_AP50", "mask_AP75",
                                                      "agnostic_box_AP", "agnostic_box_AP50", "agnostic_mask_AP50")]
    serving = metrics["at_serving_threshold"]
    lines += ["", f"At the serving threshold {best}: {serving['detections_per_image']} detections per photo for "
              f"{serving['garments_per_image']} garments; precision {serving['precision']:.3f} / recall "
              f"{serving['recall']:.3f} (class must match), {serving['agnostic_precision']:.3f} / "
              f"{serving['agnostic_recall']:.3f} (any class).", "",
              "Class-agnostic NMS after the per-class NMS (each row at its own best-F1 threshold):", "",
              "| agnostic NMS IoU | box AP50 | agnostic box AP | agnostic box AP50 | threshold | detections/photo | "
              "precision | agnostic precision | agnostic recall |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {name} | {s['box_AP50']:.4f} | {s['agnostic_box_AP']:.4f} | {s['agnostic_box_AP50']:.4f} | "
              f"{s['threshold']:.2f} | {s['detections_per_image']:.2f} | {s['precision']:.3f} | "
              f"{s['agnostic_precision']:.3f} | {s['agnostic_recall']:.3f} |"
              for name, s in metrics["agnostic_nms_effect"].items()]
    lines += ["", f"Score thresholds (IoU 0.5, class must match); best F1 at {best}:", "",
              "| threshold | precision | recall | F1 | detections/image |", "|---:|---:|---:|---:|---:|"]
    lines += [f"| {p['threshold']:.2f} | {p['precision']:.3f} | {p['recall']:.3f} | {p['f1']:.3f} | "
              f"{p['detections_per_image']:.2f} |" for p in points]
    lines += ["", "| category | box AP |", "|---|---:|"]
    lines += [f"| {k} | {'n/a' if v is None else f'{v:.4f}'} |" for k, v in metrics.get("box_AP_per_category", {}).items()]
    return "\n".join(lines) + "\n"


def record_in_manifest(bundle: Path, metrics: dict, split: str | None) -> dict:
    """Store an evaluation in the bundle's manifest and make its best-F1 threshold the serving one
    (the weights, their checksum and the bundle's version do not change)."""
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["metrics"] = {"split": split or "all", **metrics}
    manifest["model"]["score_threshold"] = metrics["best_f1_threshold"]
    manifest["model"]["class_agnostic_nms"] = metrics["class_agnostic_nms"]  # the threshold was chosen with it
    manifest["serving_threshold"] = {"value": metrics["best_f1_threshold"],
                                     "chosen_by": f"best F1 at IoU 0.5 (class must match) on the {split or 'whole'} split"}
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


SUMMARY_SKIPS = ("box_AP_per_category", "operating_points_iou50", "agnostic_operating_points_iou50")


def select(records: list[DetectionRecord], bundle: Path, split: str | None) -> list[DetectionRecord]:
    if not split:
        return records
    ids = set(json.loads((bundle / "split.json").read_text())[split])
    return [r for r in records if r.image_id in ids]


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--dataset", choices=sorted(READERS), required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", choices=["train", "val"], help="ids from the bundle's split.json")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--min-size", type=int, help="override the bundle's input size (speed/accuracy trade)")
    parser.add_argument("--score-threshold", type=float, default=0.05, help="low, as COCO AP expects")
    parser.add_argument("--proposals", type=int,
                        help="region proposals kept per image at inference (override the bundle's rpn_test_post_nms)")
    parser.add_argument("--class-agnostic-nms", type=float,
                        help="IoU of the NMS across classes (override the bundle's; 1 turns it off)")
    parser.add_argument("--compute-dtype", choices=COMPUTE_DTYPES, default="float32",
                        help="dtype of the forward pass on the CPU (bfloat16: faster, slightly different detections)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--update-manifest", action="store_true",
                        help="record the metrics in the bundle's manifest and serve at their best-F1 threshold")
    args = parser.parse_args(argv)
    if args.update_manifest and (args.compute_dtype != "float32" or args.proposals):
        parser.error("--update-manifest records the bundle as it stands; evaluate other settings with --out")
    detector = Detector(args.bundle, score_threshold=args.score_threshold, min_size=args.min_size,
                        class_agnostic_nms=args.class_agnostic_nms, compute_dtype=args.compute_dtype,
                        rpn_test_post_nms=args.proposals)
    records = select(READERS[args.dataset][0](args.data), args.bundle, args.split)[: args.limit]
    metrics = evaluate(detector, records, args.out or args.bundle / "evaluation")
    if args.update_manifest:
        record_in_manifest(args.bundle, metrics, args.split)
    print(json.dumps({k: v for k, v in metrics.items() if k not in SUMMARY_SKIPS}, indent=1))
    return metrics


if __name__ == "__main__":
    main()
