"""Detector training-step time: torchvision's default Mask R-CNN settings vs the CPU training profile,
and the EfficientNet-Lite0 FPN detector on ImageNet weights (frozen BN, stem + stage 1 frozen).

    .venv/bin/python bench/detector_train_step.py [--min-size 288] [--batch-size 4] [--steps 4] [--only lite0]

Same photos (the first Clothing Co-Parsing training batch, decoded once); the median time of a forward
+ backward + optimizer step is printed for each configuration and written to
bench/results/detector-train-step-<time>.json. `--only` keeps the profiles whose name contains it.
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

import torch  # noqa: E402

from bench.results import write_report  # noqa: E402
from common.images import load_rgb  # noqa: E402
from detection.model import DetectorConfig, build_detector  # noqa: E402
from detection.records import read_ccp  # noqa: E402
from detection.transforms import load_sample, train_transforms  # noqa: E402

CCP = ROOT.parent / "shared" / "datasets" / "clothing-co-parsing"
LITE0 = "maskrcnn_efficientnet_lite0_fpn"
CPU_PROFILE = {"rpn_train_pre_nms": 600, "rpn_train_post_nms": 300, "roi_samples_per_image": 128,
               "mask_head_channels": 128, "mask_head_layers": 2}
PROFILES = {
    "torchvision defaults": {},
    "fewer proposals + RoIs": {"rpn_train_pre_nms": 600, "rpn_train_post_nms": 300, "roi_samples_per_image": 64},
    "CPU profile (+ light mask head)": {"rpn_train_pre_nms": 600, "rpn_train_post_nms": 300,
                                       "roi_samples_per_image": 64, "mask_head_channels": 128, "mask_head_layers": 2},
    "lite0 FPN-256, torchvision heads": {"architecture": LITE0},
    "lite0 FPN-256, CPU profile": {"architecture": LITE0, **CPU_PROFILE},
    "lite0 FPN-128, CPU profile": {"architecture": LITE0, "fpn_channels": 128, **CPU_PROFILE},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--min-size", type=int, default=288)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per profile (after one warm-up step)")
    parser.add_argument("--only", default="", help="run only the profiles whose name contains this")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    torch.manual_seed(0)
    records = read_ccp(CCP)[: args.batch_size]
    batch = [load_sample(r.instances(), load_rgb(r.image_path), train_transforms(args.min_size)) for r in records]
    images, targets = [b[0] for b in batch], [b[1] for b in batch]
    # The load average says how shared the CPU was (these timings are only comparable on a quiet machine).
    report = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "min_size": args.min_size,
              "load_average_1m_at_start": os.getloadavg()[0],
              "batch_size": args.batch_size, "profiles": {}}
    print(f"{'profile':<34}{'median s/step':>14}")
    for name, overrides in PROFILES.items():
        if args.only not in name:
            continue
        config = DetectorConfig(num_classes=14, min_size=args.min_size, max_size=int(args.min_size * 1.5), **overrides)
        model = build_detector(config, pretrained=True).train()
        trainable = [p for p in model.parameters() if p.requires_grad]
        # What each trains with: AdamW from scratch, SGD for fine-tuning the ImageNet backbone.
        optimizer = (torch.optim.SGD(trainable, lr=0.01, momentum=0.9, weight_decay=1e-4) if "lite0" in name
                     else torch.optim.AdamW(trainable, lr=1e-4))
        times = []
        for step in range(args.steps + 1):
            start = time.perf_counter()
            loss = sum(model(images, targets).values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step:  # the first step warms up allocators and kernels
                times.append(time.perf_counter() - start)
        report["profiles"][name] = {"config": overrides, "seconds": times, "median_s": statistics.median(times)}
        print(f"{name:<34}{statistics.median(times):>14.2f}")
    write_report("detector-train-step", report, args.out)


if __name__ == "__main__":
    main()
