"""What keeping embeddings costs the pipeline's classify stage: `Classifier.predict` (tags only, the
stage before embeddings) against `predict_with_embeddings` (tags and embeddings from the same forward
pass, what the pipeline runs now), on the same crops, interleaved A/B so that load from other processes
hits both alike.

    nice -n 15 .venv/bin/python bench/similarity_embedding_cost.py [--photos 12] [--repeats 20]

The crops are what the pipeline classifies for the last `--photos` street photos of the detector's
validation split: each whole photo plus its detected garments. Writes
bench/results/similarity-embedding-cost-<time>.json.
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

import torch  # noqa: E402,F401  (before TensorFlow)
import torchvision  # noqa: E402,F401
import numpy as np  # noqa: E402

from app.config import Settings  # noqa: E402
from app.fetch import decode  # noqa: E402
from app.pipeline import Pipeline  # noqa: E402
from bench.pipeline import bench_photos  # noqa: E402
from bench.results import write_report  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    settings = Settings.from_env()
    pipeline = Pipeline.load(settings)
    classifier = pipeline.classifier
    crop_sets = []
    for path in bench_photos(args.photos):
        image = decode(path.read_bytes(), settings)
        found = [d for d in pipeline.detector.detect([image])[0] if pipeline._big_enough(d)]
        crop_sets.append([image] + [pipeline.crop(image, d) for d in found])
    classifier.predict(crop_sets[0])  # warm both paths
    classifier.predict_with_embeddings(crop_sets[0])
    timings = {"predict": [], "predict_with_embeddings": []}
    for _ in range(args.repeats):
        for crops in crop_sets:
            for name, function in (("predict", classifier.predict), ("predict_with_embeddings", classifier.predict_with_embeddings)):
                start = time.perf_counter()
                function(crops)
                timings[name].append((time.perf_counter() - start) * 1000)
    tags_only, with_embeddings = (statistics.median(timings[n]) for n in ("predict", "predict_with_embeddings"))
    report = {"photos": len(crop_sets), "mean_crops_per_photo": float(np.mean([len(c) for c in crop_sets])),
              "repeats": args.repeats, "bundle": classifier.embedding_version,
              "classify_median_ms": {"tags_only": round(tags_only, 2), "tags_and_embeddings": round(with_embeddings, 2)},
              "overhead_percent": round((with_embeddings / tags_only - 1) * 100, 2),
              "paired_median_difference_ms": round(statistics.median(
                  b - a for a, b in zip(timings["predict"], timings["predict_with_embeddings"])), 2)}
    print(json.dumps(report, indent=1))
    write_report("similarity-embedding-cost", report)


if __name__ == "__main__":
    main()
