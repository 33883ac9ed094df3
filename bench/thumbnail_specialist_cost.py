"""What the thumbnail specialist costs a request: catalogue thumbnails through the pipeline, with and without it.

    nice -n 5 .venv/bin/python bench/thumbnail_specialist_cost.py [--images 60] [--rounds 2]

Held-out catalogue thumbnails (the classifier bundle's test split, the first --images of them) are decoded
as an upload would be (`app.fetch.decode`) and analysed one at a time by two pipelines loaded in this
process, the served one and the same with `CLASSIFIER_THUMBNAIL_SPECIALIST=0`, alternating image by image so
that both see the same machine state. Reports each one's request time (median, p90) and classify stage,
the share of thumbnails the specialist read, how many articleTypes it changed, and the peak RSS of the
process (both pipelines loaded). Writes bench/results/thumbnail-specialist-cost-<time>.json.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402  (before TensorFlow)
import torchvision  # noqa: E402,F401
from tqdm import tqdm  # noqa: E402

from app.config import Settings  # noqa: E402
from app.fetch import decode  # noqa: E402
from app.pipeline import Pipeline  # noqa: E402
from bench.pipeline import peak_rss_mb, percentile  # noqa: E402
from bench.results import write_report  # noqa: E402
from classification.evaluate import held_out_records  # noqa: E402

CATALOGUE = ROOT.parent / "shared" / "datasets" / "fashion-product-images-small"


def main(argv=None) -> dict:
    defaults = Settings()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classifier", type=Path, default=defaults.classifier_bundle)
    parser.add_argument("--catalogue", type=Path, default=CATALOGUE)
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=2, help="passes over the thumbnails (the first warms up)")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    records = held_out_records(args.classifier, catalogue=args.catalogue)["catalogue"][:args.images]
    settings = defaults.replace(classifier_bundle=args.classifier, device="cpu")
    pipelines = {"with": Pipeline.load(settings),
                 "without": Pipeline.load(settings.replace(classifier_thumbnail_specialist=False))}
    if pipelines["with"].classifier.specialist is None:
        parser.error(f"{args.classifier} has no thumbnail specialist")
    images = [decode(r.image_path.read_bytes(), settings) for r in records]
    times = {name: [] for name in pipelines}
    classify = {name: [] for name in pipelines}
    labels = {name: [] for name in pipelines}
    for round_ in range(args.rounds):
        for image in tqdm(images, desc=f"round {round_ + 1}/{args.rounds}"):
            for name, pipeline in pipelines.items():
                timings: dict = {}
                started = time.perf_counter()
                items = pipeline.analyse(image, timings)
                if round_ == 0:
                    labels[name].append(items[0]["category"]["articleType"]["label"])
                    continue  # the first pass warms up
                times[name].append(1000 * (time.perf_counter() - started))
                classify[name].append(timings.get("classify", 0.0))  # ms already
    served = pipelines["with"].classifier
    gate = served.feature_heads.gate.catalogue_probability(served.embedding_inputs(images)[0])
    report = {"classifier": str(args.classifier), "specialist": served.specialist_settings.version,
              "images": len(images), "rounds": args.rounds, "threads": torch.get_num_threads(),
              "read_by_the_specialist": int((gate >= served.specialist_settings.min_gate).sum()),
              "articleType_changed": sum(a != b for a, b in zip(labels["with"], labels["without"])),
              "peak_rss_mb_both_loaded": round(peak_rss_mb()),
              "request_ms": {name: {"p50": round(statistics.median(v), 1), "p90": round(percentile(v, 90), 1)}
                             for name, v in times.items()},
              "classify_ms": {name: {"p50": round(statistics.median(v), 1)} for name, v in classify.items()}}
    report["request_ms_added_p50"] = round(report["request_ms"]["with"]["p50"] - report["request_ms"]["without"]["p50"], 1)
    print(report)
    write_report("thumbnail-specialist-cost", report)
    return report


if __name__ == "__main__":
    main()
