"""What each serving speed-up of the detector buys: the model call alone on street photos.

    .venv/bin/python bench/detector_serving.py [--photos 4] [--repeats 8] [--min-size 512]

Variants, the same bundle: as trained (`load_bundle`: NCHW, batch norms as layers), NHWC only, NHWC +
folded batch norms (what `Detector` serves), and that + a bfloat16 backbone (`DETECTOR_COMPUTE_DTYPE`).
Interleaved, one photo per call, median per variant; also how far each variant's detections are from
the as-trained model's on the same photos (matched by IoU). Writes bench/results/detector-serving-<time>.json.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torchvision  # noqa: E402,F401
from torchvision.ops import box_iou  # noqa: E402

from bench.results import write_report  # noqa: E402
from common.images import load_rgb  # noqa: E402
from detection.bundle import load_bundle  # noqa: E402
from detection.inference import Detector, to_tensor  # noqa: E402

PHOTOS = ROOT.parent / "shared" / "datasets" / "clothing-co-parsing" / "photos"


def as_trained(bundle: Path, min_size: int, channels_last: bool):
    model, _ = load_bundle(bundle, {"min_size": min_size})
    if channels_last:
        model.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def call(image):
        return model([to_tensor(image, torch.device("cpu"))])[0]
    return call


def served(bundle: Path, min_size: int, compute_dtype: str):
    detector = Detector(bundle, device="cpu", min_size=min_size, compute_dtype=compute_dtype)

    @torch.inference_mode()
    def call(image):
        with detector.autocast():
            return detector.model([to_tensor(image, detector.device)])[0]
    return call


def agreement(outputs: list[dict], reference: list[dict]) -> dict:
    """Each as-trained detection matched to the variant's box of highest IoU (order may differ where
    scores moved): the worst of those IoUs, the largest score change among the pairs, and the counts."""
    worst_iou, score_change = 1.0, 0.0
    for found, truth in zip(outputs, reference):
        if len(truth["boxes"]) and len(found["boxes"]):
            overlaps = box_iou(truth["boxes"], found["boxes"])
            best, index = overlaps.max(dim=1)
            worst_iou = min(worst_iou, float(best.min()))
            score_change = max(score_change, float((found["scores"][index] - truth["scores"]).abs().max()))
        elif len(truth["boxes"]) != len(found["boxes"]):
            worst_iou = 0.0
    return {"detections": sum(len(o["boxes"]) for o in outputs), "as_trained_detections": sum(len(r["boxes"]) for r in reference),
            "worst_matched_iou": round(worst_iou, 5), "max_score_change": round(score_change, 6)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "ccp-maskrcnn-efflite0")
    parser.add_argument("--photos", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--min-size", type=int, default=512)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()

    photos = [load_rgb(p) for p in sorted(PHOTOS.glob("*.jpg"))[: args.photos]]
    variants = {"as trained (NCHW, batch norm layers)": as_trained(args.bundle, args.min_size, False),
                "NHWC": as_trained(args.bundle, args.min_size, True),
                "NHWC + folded batch norm (served)": served(args.bundle, args.min_size, "float32"),
                "served + bfloat16 backbone": served(args.bundle, args.min_size, "bfloat16")}
    reference = [variants["as trained (NCHW, batch norm layers)"](p) for p in photos]
    seconds = {name: [] for name in variants}
    differences = {}
    for name, call in variants.items():  # warm-up and agreement with the as-trained model
        differences[name] = agreement([call(p) for p in photos], reference)
    for _ in range(args.repeats):
        for image in photos:
            for name, call in variants.items():
                start = time.perf_counter()
                call(image)
                seconds[name].append(time.perf_counter() - start)
    report = {"bundle": str(args.bundle.relative_to(ROOT) if args.bundle.is_relative_to(ROOT) else args.bundle),
              "min_size": args.min_size, "photos": len(photos), "calls_per_variant": len(photos) * args.repeats,
              "torch_threads": torch.get_num_threads(),
              "variants": {name: {"median_ms": round(statistics.median(s) * 1000, 1), **differences[name]}
                           for name, s in seconds.items()}}
    print(f"{'variant':40s} {'median ms':>10s}  agreement with the as-trained model")
    for name, row in report["variants"].items():
        print(f"{name:40s} {row['median_ms']:10.1f}  {row['detections']} detections ({row['as_trained_detections']}), "
              f"worst matched IoU {row['worst_matched_iou']}, score change <= {row['max_score_change']}")
    write_report("detector-serving", report, args.out)


if __name__ == "__main__":
    main()
