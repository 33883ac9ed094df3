"""What decoding costs per format and colour profile: the `decode` stage of an analysis (app/fetch.py).

    nice -n 5 .venv/bin/python bench/image_decoding.py [--sizes 4032x3024 1600x1200] [--repeats 5]

The picture: a held-out Clothing Co-Parsing street photo enlarged to each size with a little
Gaussian noise (sensor grain, so the codecs have texture to code), saved as JPEG (quality 90), HEIC
(quality 80, what phones use), AVIF (quality 80), WebP (quality 85) and PNG, each with no colour
profile, an sRGB profile and a Display P3 profile (built as the tests build it). Timed: `decode()`
as the service runs it (sniff, pixel limit, decode, EXIF, profile to sRGB), median of --repeats, one
thread. Writes bench/results/image-decoding-<time>.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import io
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image, ImageCms  # noqa: E402
from tqdm import tqdm  # noqa: E402

from app.config import Settings  # noqa: E402
from app.fetch import decode  # noqa: E402
from bench.results import write_report  # noqa: E402
from tests.common.icc import DISPLAY_P3_COLORANTS, rgb_profile  # noqa: E402

PHOTO = ROOT.parent / "shared" / "datasets" / "clothing-co-parsing" / "photos" / "1004.jpg"
FORMATS = {"JPEG": {"quality": 90}, "HEIF": {"quality": 80}, "AVIF": {"quality": 80},
           "WEBP": {"quality": 85}, "PNG": {}}
PROFILES = {"none": None, "sRGB": ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes(),
            "Display P3": rgb_profile(DISPLAY_P3_COLORANTS, "Display P3")}


def picture(width: int, height: int) -> Image.Image:
    with Image.open(PHOTO) as photo:
        photo = photo.convert("RGB")
        # Cover the size (the street photo is portrait; phones shoot landscape too), then crop.
        scale = max(width / photo.width, height / photo.height)
        resized = photo.resize((round(photo.width * scale), round(photo.height * scale)), Image.BICUBIC)
    pixels = np.asarray(resized.crop((0, 0, width, height)), np.float32)
    grain = np.random.default_rng(0).normal(0.0, 3.0, pixels.shape)
    return Image.fromarray(np.clip(pixels + grain, 0, 255).astype(np.uint8))


def timed_decode(data: bytes, settings: Settings, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        decode(data, settings)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["4032x3024", "1600x1200"])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    settings = Settings()
    rows = []
    cases = [(size, fmt, profile) for size in args.sizes for fmt in FORMATS for profile in PROFILES]
    for size, fmt, profile in tqdm(cases, desc="decoding"):
        width, height = (int(v) for v in size.split("x"))
        out = io.BytesIO()
        options = dict(FORMATS[fmt], **({"icc_profile": PROFILES[profile]} if PROFILES[profile] else {}))
        picture(width, height).save(out, fmt, **options)
        data = out.getvalue()
        decode(data, settings)  # the profile's transform is built (and cached) once per worker
        rows.append({"size": size, "format": fmt.lower(), "profile": profile, "bytes": len(data),
                     "decode_ms_p50": round(timed_decode(data, settings, args.repeats), 1)})
        tqdm.write(f"{size} {fmt:5s} {profile:10s} {len(data) / 1e6:6.2f} MB  {rows[-1]['decode_ms_p50']:7.1f} ms")
    write_report("image-decoding", {
        "command": " ".join(["bench/image_decoding.py", *sys.argv[1:]]),
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
        "photo": str(PHOTO.relative_to(ROOT.parent)), "repeats": args.repeats, "rows": rows,
    })


if __name__ == "__main__":
    main()
