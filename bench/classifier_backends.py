"""Which Keras backend should serve the classifier? Latency and memory of the same bundle under each.

    .venv/bin/python bench/classifier_backends.py [--bundle models/fashion-lite0] [--repeats 50]

Each backend runs in its own process (Keras picks its backend at import). Prints a table and writes
bench/results/classifier-backends-<time>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.results import write_report  # noqa: E402

CHILD = r"""
import json, statistics, sys, time
import torch, torchvision
import numpy as np
from classification.inference import Classifier

def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024

bundle, repeats = sys.argv[1], int(sys.argv[2])
before = rss()
start = time.perf_counter()
classifier = Classifier(bundle)
load_s = time.perf_counter() - start
rng = np.random.default_rng(0)
result = {"load_s": load_s, "rss_mb_before": before}
for batch in (1, 4, 16, 64):
    images = [rng.integers(0, 255, (400, 300, 3), dtype=np.uint8) for _ in range(batch)]
    for _ in range(3):
        classifier.predict(images)  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        classifier.predict(images)
        times.append(time.perf_counter() - t)
    result[f"batch_{batch}_ms"] = statistics.median(times) * 1000
result["rss_mb_after"] = rss()
print(json.dumps(result))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default=str(ROOT / "models" / "fashion-lite0"))
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    results = {}
    for backend in ("tensorflow", "torch"):
        out = subprocess.run([sys.executable, "-c", CHILD, args.bundle, str(args.repeats)], cwd=ROOT, check=True,
                             capture_output=True, text=True, env={**os.environ, "KERAS_BACKEND": backend})
        results[backend] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{'backend':<12}{'load s':>8}{'b=1 ms':>9}{'b=4 ms':>9}{'b=16 ms':>9}{'b=64 ms':>9}{'RSS MB':>9}")
    for backend, r in results.items():
        print(f"{backend:<12}{r['load_s']:>8.2f}{r['batch_1_ms']:>9.1f}{r['batch_4_ms']:>9.1f}{r['batch_16_ms']:>9.1f}"
              f"{r['batch_64_ms']:>9.1f}{r['rss_mb_after']:>9.0f}")
    write_report("classifier-backends", results)


if __name__ == "__main__":
    main()
