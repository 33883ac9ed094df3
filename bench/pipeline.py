"""End-to-end pipeline benchmark: fetch from a local server, detect, classify, colours, store.

    .venv/bin/python bench/pipeline.py [--images 12] [--concurrency 1 2 4] [--requests 24] [--soak 1000]
        [--batching 4]

Images are Clothing Co-Parsing street photos (several garments each) from the detector's validation
split, served from 127.0.0.1. Each request posts {"refresh": true} so the models run every time.
With --batching N the concurrency levels run again with cross-request batching (app/batching.py). Also runs, in the same process on the
same images, the naive path of the prototype this replaces (each crop and each task classified
separately, batch size 1) and prints the throughput ratio. Writes bench/results/pipeline-<time>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402,F401  (before TensorFlow)
import torchvision  # noqa: E402,F401
from tqdm import tqdm  # noqa: E402

from app import create_app  # noqa: E402
from bench.results import write_report  # noqa: E402
from app.config import Settings  # noqa: E402
from app.db import upgrade  # noqa: E402
from app.fetch import decode  # noqa: E402
from app.pipeline import Pipeline  # noqa: E402

CCP_PHOTOS = ROOT.parent / "shared" / "datasets" / "clothing-co-parsing" / "photos"


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def serve(files: dict[str, bytes]) -> tuple[ThreadingHTTPServer, int]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            body = files.get(self.path)
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def run_level(client, urls: list[str], concurrency: int, requests: int) -> dict:
    latencies, stages = [], {}
    detections = []

    def one(i: int):
        start = time.perf_counter()
        response = client.post("/v1/analyses", json={"image_url": urls[i % len(urls)], "refresh": True})
        elapsed = time.perf_counter() - start
        assert response.status_code == 201, response.json
        return elapsed, response.json

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for elapsed, body in tqdm(pool.map(one, range(requests)), total=requests, desc=f"concurrency {concurrency}", leave=False):
            latencies.append(elapsed)
            detections.append(len(body["items"]) - 1)
            for stage, ms in body["timings_ms"].items():
                stages.setdefault(stage, []).append(ms)
    wall = time.perf_counter() - started
    return {"concurrency": concurrency, "requests": requests, "images_per_s": requests / wall,
            "p50_ms": percentile(latencies, 50) * 1000, "p95_ms": percentile(latencies, 95) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000, "mean_garments": statistics.mean(detections),
            # The target is stated for photos with 3 garments: their own p50, over requests where the
            # detector found at least 3.
            "p50_ms_3plus_garments": (percentile([t for t, n in zip(latencies, detections) if n >= 3], 50) * 1000
                                      if any(n >= 3 for n in detections) else None),
            "stage_ms_mean": {k: statistics.mean(v) for k, v in stages.items()},
            "stage_ms_p50": {k: statistics.median(v) for k, v in stages.items()}}


def naive_path(pipeline, images, settings) -> dict:
    """The prototype: every crop, every task, one model call each (batch size 1)."""
    classifier = pipeline.classifier
    started = time.perf_counter()
    calls = 0
    for data in tqdm(images, desc="naive path", leave=False):
        image = decode(data, settings)
        found = pipeline.detector.detect([image])[0]
        for crop in [image] + [pipeline.crop(image, d) for d in found]:
            for _task in ("gender", "masterCategory", "subCategory", "articleType", "baseColour", "season", "usage"):
                classifier.predict([crop])
                calls += 1
    wall = time.perf_counter() - started
    return {"images": len(images), "images_per_s": len(images) / wall, "classifier_calls": calls}


def batched_path(pipeline, images, settings) -> dict:
    started = time.perf_counter()
    for data in tqdm(images, desc="batched path", leave=False):
        pipeline.analyse(decode(data, settings), {})
    wall = time.perf_counter() - started
    return {"images": len(images), "images_per_s": len(images) / wall}


def bench_photos(count: int) -> list[Path]:
    """The same fixed photos every run: the last `count` of the detector's validation split (photos it
    never trained on), or of all photos for a bundle without a split."""
    split = Settings.from_env().detector_bundle / "split.json"
    photos = sorted(CCP_PHOTOS.glob("*.jpg"))
    if split.is_file():
        held_out = set(json.loads(split.read_text())["val"])
        photos = [p for p in photos if int(p.stem) in held_out]
    return photos[-count:]


def print_levels(title: str, levels: list[dict]) -> None:
    print(f"\n{title}\n{'clients':>8}{'img/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'garments':>10}"
          f"{'p50 ms 3+':>11}  per-stage p50 ms")
    for level in levels:
        stages = " ".join(f"{k}={v:.0f}" for k, v in level["stage_ms_p50"].items() if k != "total")
        three = level["p50_ms_3plus_garments"]
        print(f"{level['concurrency']:>8}{level['images_per_s']:>8.2f}{level['p50_ms']:>9.0f}{level['p95_ms']:>9.0f}"
              f"{level['p99_ms']:>9.0f}{level['mean_garments']:>10.1f}{'-' if three is None else f'{three:.0f}':>11}  {stages}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--requests", type=int, default=24, help="requests per concurrency level")
    parser.add_argument("--batching", type=int, default=0, metavar="N",
                        help="also run the concurrency levels with cross-request batching of up to N images")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    parser.add_argument("--soak", type=int, default=0, help="then this many sequential requests, RSS at 100 and at the end")
    parser.add_argument("--no-naive", action="store_true",
                        help="skip the comparison with the naive per-crop path (minutes on street photos)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()

    photos = bench_photos(args.images)
    files = {f"/{p.name}": p.read_bytes() for p in photos}
    server, port = serve(files)
    urls = [f"http://127.0.0.1:{port}{path}" for path in files]
    database = Path(tempfile.mkdtemp()) / "bench.sqlite3"
    upgrade(f"sqlite:///{database}")
    settings = Settings.from_env().replace(database_url=f"sqlite:///{database}", fetch_allow_private="127.0.0.0/8")
    rss_before_models = rss_mb()
    app = create_app(settings)
    pipeline = app.extensions["pipeline"].load()
    client = app.test_client()
    report = {
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
                    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "keras_backend": os.environ.get("KERAS_BACKEND", "tensorflow"), "bundles": pipeline.bundles,
        "detector_min_size": pipeline.detector.model.transform.min_size[0],
        "detector_compute_dtype": pipeline.detector.compute_dtype, "images": len(photos), "gc_freeze": settings.gc_freeze,
        "rss_mb": {"before_models": rss_before_models, "after_load": rss_mb()}, "levels": [],
    }
    for level in args.concurrency:
        report["levels"].append(run_level(client, urls, level, args.requests))
    if args.batching > 1:
        holder = app.extensions["pipeline"]
        holder.set(Pipeline(pipeline.detector, pipeline.classifier, args.batching, args.batch_wait_ms / 1000))
        report["batching"] = {"max_images": args.batching, "max_wait_ms": args.batch_wait_ms,
                              "levels": [run_level(client, urls, level, args.requests) for level in args.concurrency]}
        holder.set(pipeline)
    images = list(files.values())
    report["batched"] = batched_path(pipeline, images, settings)
    if not args.no_naive:
        report["naive"] = naive_path(pipeline, images, settings)
        report["batched_over_naive"] = report["batched"]["images_per_s"] / report["naive"]["images_per_s"]
    if args.soak:
        rss = {}
        for i in tqdm(range(1, args.soak + 1), desc="soak"):
            client.post("/v1/analyses", json={"image_url": urls[i % len(urls)], "refresh": True})
            if i in (100, args.soak):
                rss[i] = rss_mb()
        report["soak_rss_mb"] = rss
    report["rss_mb"]["peak"] = peak_rss_mb()
    if torch.cuda.is_available():
        report["gpu_peak_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    server.shutdown()

    print_levels("one request per model call", report["levels"])
    if "batching" in report:
        print_levels(f"cross-request batching, up to {args.batching} images, wait {args.batch_wait_ms} ms",
                     report["batching"]["levels"])
    if "naive" in report:
        print(f"batched path {report['batched']['images_per_s']:.2f} img/s, naive path {report['naive']['images_per_s']:.2f} "
              f"img/s ({report['naive']['classifier_calls']} classifier calls): ratio {report['batched_over_naive']:.2f}x")
    print(f"RSS MB: {json.dumps(report['rss_mb'])}" + (f", soak {report['soak_rss_mb']}" if args.soak else ""))
    write_report("pipeline", report, args.out)


if __name__ == "__main__":
    main()
