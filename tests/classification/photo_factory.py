"""Small phone-photo folders in the clothing-dataset layout, drawn with PIL, for the classifier tests."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# label -> shape drawn; "Not sure" rows must be skipped by the reader.
LABELS = {"T-Shirt": "rectangle", "Pants": "tall", "Shoes": "wide", "Not sure": "rectangle"}


def make_photos(root: Path, n: int = 24, senders: int = 6, seed: int = 0) -> Path:
    """Garments on a textured 'floor', several photos per sender; writes images.csv + images/."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        label = list(LABELS)[i % len(LABELS)]
        floor = rng.integers(60, 200, 3)
        pixels = np.clip(floor + rng.normal(0, 12, (120, 160, 3)), 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels)
        draw = ImageDraw.Draw(image)
        box = {"rectangle": (40, 20, 120, 90), "tall": (65, 10, 95, 110), "wide": (20, 60, 140, 95)}[LABELS[label]]
        draw.rectangle(box, fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
        name = f"photo-{i:03d}"
        image.save(root / "images" / f"{name}.jpg", quality=90)
        rows.append([name, str(i % senders), label, "False"])
    with open(root / "images.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "sender_id", "label", "kids"])
        writer.writerows(rows)
    return root
