"""What the classifier's serving steps buy: the model call alone, the network as trained, its serving copy
(channels-first, batch norms folded) and that copy exported (what the service runs on the CPU).

    .venv/bin/python bench/classifier_serving.py [--bundle models/fashion-lite0] [--repeats 12]

The same random uint8 batches at the bundle's input size, the three variants interleaved, median per batch
size; also the largest difference of any output from the network as trained. Torch backend. Writes
bench/results/classifier-serving-<time>.json.
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
os.environ.setdefault("KERAS_BACKEND", "torch")

from classification import runtime  # noqa: E402,F401  (torch before TensorFlow, the backend first)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.results import write_report  # noqa: E402
from classification.bundle import load_bundle  # noqa: E402
from classification.serving_graph import ExportedNetwork, for_serving  # noqa: E402

BATCH_SIZES = (1, 2, 4, 8, 14, 32, 64)  # a request's crops and their mirror images: 2-16; batch jobs: 64


def outputs(call, batch: np.ndarray) -> dict[str, np.ndarray]:
    with runtime.no_grad():
        return {name: keras.ops.convert_to_numpy(value) for name, value in call(batch, training=False).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "fashion-lite0")
    parser.add_argument("--repeats", type=int, default=12)
    args = parser.parse_args()
    if keras.backend.backend() != "torch":
        raise SystemExit("the serving copy and its export are made on the torch backend")

    trained, _, manifest = load_bundle(args.bundle)
    height, width = manifest["model"]["input_size"]
    copy = for_serving(trained)
    started = time.perf_counter()
    exported = ExportedNetwork(copy, height, width)
    export_s = time.perf_counter() - started
    variants = {"as trained": trained, "serving copy": copy, "serving copy, exported": exported}

    rng = np.random.default_rng(0)
    rows = {}
    for size in BATCH_SIZES:
        batch = rng.integers(0, 256, (size, height, width, 3), dtype=np.uint8)
        reference = outputs(trained, batch)
        seconds = {name: [] for name in variants}
        differences = {}
        for name, call in variants.items():  # warm-up, and how far each is from the network as trained
            got = outputs(call, batch)
            differences[name] = max(float(np.abs(got[k] - reference[k]).max()) for k in reference)
        for _ in range(args.repeats):
            for name, call in variants.items():
                start = time.perf_counter()
                outputs(call, batch)
                seconds[name].append(time.perf_counter() - start)
        rows[size] = {name: {"median_ms": round(statistics.median(s) * 1000, 1), "max_difference": differences[name]}
                      for name, s in seconds.items()}
        print(f"batch {size:3d}: " + ", ".join(f"{name} {row['median_ms']:.1f} ms (diff {row['max_difference']:.1e})"
                                              for name, row in rows[size].items()))
    report = {"bundle": str(args.bundle), "input_size": [height, width], "repeats": args.repeats,
              "export_seconds": round(export_s, 2), "torch_threads": torch.get_num_threads(),
              "batches": rows}
    write_report("classifier-serving", report)


if __name__ == "__main__":
    main()
