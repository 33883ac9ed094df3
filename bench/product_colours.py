"""The whole image's dominant colours with and without its backdrop, against the catalogue's baseColour.

    nice -n 5 .venv/bin/python bench/product_colours.py

A product shot's white background used to be its first "dominant colour" (and a phone photo's floor or
bed sheet). On the classifier bundle's catalogue test split (3,997 thumbnails), each thumbnail's colours
are read as before (every pixel) and as served now (`app.colours.whole_image_colours`: the backdrop
joined to the border left out), both on the same sampled copy (`small_copy`), and compared with its `styles.csv` baseColour where that label names one
palette colour (Navy Blue -> navy, Off White -> white; labels such as Multi, Gold or Skin are skipped):
how often the first colour is that one, and how often one of the (up to three) colours is. On the phone
photos of the held-out senders (no colour labels) it reports how often a backdrop was found and how much
of the picture it was, and times both readings on a 12-megapixel photo. Writes
bench/results/product-colours-<time>.json and a PNG of examples.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from app.colours import backdrop_mask, dominant_colours, small_copy, whole_image_colours  # noqa: E402
from bench.results import RESULTS, write_report  # noqa: E402
from classification.catalogue import read_catalogue  # noqa: E402
from classification.plots import image_grid  # noqa: E402
from common.images import load_rgb  # noqa: E402

DATA = ROOT.parent / "shared" / "datasets"
BUNDLE = ROOT / "models" / "fashion-lite0"
# The catalogue's baseColour labels that name one colour of the palette (app.colours.PALETTE).
PALETTE_NAME = {"Black": "black", "White": "white", "Off White": "white", "Blue": "blue", "Navy Blue": "navy",
                "Brown": "brown", "Grey": "grey", "Red": "red", "Green": "green", "Pink": "pink", "Purple": "purple",
                "Silver": "silver", "Yellow": "yellow", "Beige": "beige", "Maroon": "maroon", "Orange": "orange",
                "Olive": "olive", "Cream": "cream", "Charcoal": "charcoal", "Lavender": "lavender", "Khaki": "khaki",
                "Magenta": "magenta", "Teal": "teal", "Tan": "tan", "Mustard": "mustard", "Turquoise Blue": "turquoise"}
EXAMPLES = 12


def names(colours: list[dict]) -> list[str]:
    return [c["name"] for c in colours]


def cost_on_a_large_photo(repeats: int = 5) -> dict:
    """Median milliseconds to read a 4032x3024 photo's whole-image colours before (every pixel, sampled)
    and now (a sampled copy without the backdrop): a red garment on a noisy backdrop."""
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 255, (3024, 4032, 3), dtype=np.uint8)
    photo[756:2268, 1008:3024] = (200, 30, 40)
    out = {}
    for name, read in (("before", dominant_colours), ("served", whole_image_colours)):
        read(photo)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            read(photo)
            times.append((time.perf_counter() - started) * 1000)
        out[name] = round(float(np.median(times)), 1)
    return out


def main() -> dict:
    split = json.loads((BUNDLE / "split.json").read_text())
    test = set(split["test"])
    rows = [r for r in read_catalogue(DATA / "fashion-product-images-small").records
            if str(r.id) in test and r.get("baseColour") in PALETTE_NAME]
    started = time.perf_counter()
    first, anywhere, examples = {"before": 0, "served": 0}, {"before": 0, "served": 0}, []
    backdrop_first = 0
    for record in tqdm(rows, desc="catalogue thumbnails"):
        image = small_copy(load_rgb(record.image_path))
        wanted = PALETTE_NAME[record.get("baseColour")]
        readings = {"before": names(dominant_colours(image)), "served": names(whole_image_colours(image))}
        for way, found in readings.items():
            first[way] += bool(found) and found[0] == wanted
            anywhere[way] += wanted in found
        backdrop_first += bool(readings["before"]) and readings["before"][0] == "white" and wanted != "white"
        if len(examples) < EXAMPLES and readings["before"][:1] != readings["served"][:1]:
            examples.append((image, f"{record.get('baseColour')}\nbefore: {', '.join(readings['before'])}\n"
                                    f"now: {', '.join(readings['served'])}"))
    photo_val = split["photo"]["val"]
    shares = []
    for image_id in tqdm(photo_val, desc="phone photos"):
        image = small_copy(load_rgb(DATA / "clothing-dataset" / "images" / f"{image_id}.jpg"))
        backdrop = backdrop_mask(image)
        shares.append(0.0 if backdrop is None else float(backdrop.mean()))
        if len(examples) < 2 * EXAMPLES and backdrop is not None and len(shares) % 40 == 1:
            examples.append((image, f"phone photo\nbefore: {', '.join(names(dominant_colours(image)))}\n"
                                    f"now: {', '.join(names(whole_image_colours(image)))}"))
    shares = np.asarray(shares)
    report = {"milliseconds_12_megapixels": cost_on_a_large_photo(),
        "thumbnails": len(rows), "seconds": round(time.perf_counter() - started, 1),
        "first_colour_is_the_base_colour": {way: round(n / len(rows), 4) for way, n in first.items()},
        "base_colour_among_the_colours": {way: round(n / len(rows), 4) for way, n in anywhere.items()},
        "before_first_colour_white_on_a_product_that_is_not": round(backdrop_first / len(rows), 4),
        "phone_photos": len(shares), "phone_photos_with_a_backdrop": round(float((shares > 0).mean()), 4),
        "phone_photo_backdrop_share_median": round(float(np.median(shares[shares > 0])), 4) if (shares > 0).any() else None,
    }
    path = write_report("product-colours", report)
    if examples:
        image_grid([e[0] for e in examples], [e[1] for e in examples],
                   "Whole-image colours: every pixel (before) and without the backdrop (now)",
                   RESULTS / (path.stem + ".png"))
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
