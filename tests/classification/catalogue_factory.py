"""Small catalogues drawn with PIL, in the Kaggle layout, for the classifier tests."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HEADER = ["id", "gender", "masterCategory", "subCategory", "articleType", "baseColour", "season", "year",
          "usage", "productDisplayName"]
# (masterCategory, subCategory, articleType, shape): each article is drawn as its own shape.
ARTICLES = [
    ("Apparel", "Topwear", "Tshirts", "rectangle"),
    ("Apparel", "Bottomwear", "Jeans", "tall"),
    ("Footwear", "Shoes", "Casual Shoes", "wide"),
    ("Accessories", "Watches", "Watches", "ellipse"),
    ("Accessories", "Socks", "Socks", "small"),
    ("Apparel", "Socks", "Socks", "small"),
]
COLOURS = {"Red": (200, 30, 30), "Blue": (30, 30, 200), "Black": (20, 20, 20)}


def draw_item(article_shape: str, colour: tuple[int, int, int], size=(60, 80)) -> Image.Image:
    image = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    w, h = size
    boxes = {"rectangle": (8, 10, w - 8, h - 30), "tall": (18, 5, w - 18, h - 5), "wide": (3, 40, w - 3, h - 15),
             "small": (20, 30, w - 20, h - 30)}
    if article_shape == "ellipse":
        draw.ellipse((10, 20, w - 10, h - 20), fill=colour)
    else:
        draw.rectangle(boxes[article_shape], fill=colour)
    return image


def make_catalogue(root: Path, n: int = 48, kaggle_dialect: bool = False, seed: int = 0,
                   extra_rows: list[list[str]] | None = None) -> Path:
    """Write `root/styles.csv` and `root/images/<id>.jpg`; returns root."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        master, sub, article, shape = ARTICLES[i % len(ARTICLES)]
        colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
        item_id = str(1000 + i)
        draw_item(shape, COLOURS[colour]).save(root / "images" / f"{item_id}.jpg", quality=95)
        gender = ["Men", "Women"][i % 2]
        season = ["Summer", "Winter"][(i // 2) % 2]
        rows.append([item_id, gender, master, sub, article, colour, season, "2012", ["Casual", "Sports"][(i // 3) % 2],
                     f"Brand, {colour} {article}, size M" if kaggle_dialect else f"Brand {colour} {article}"])
    rows += extra_rows or []
    with open(root / "styles.csv", "w", newline="") as handle:
        if kaggle_dialect:
            # Kaggle's own file: commas inside names are NOT quoted.
            handle.write(",".join(HEADER) + "\n")
            for row in rows:
                handle.write(",".join(row) + "\n")
        else:
            writer = csv.writer(handle)
            writer.writerow(HEADER)
            writer.writerows(rows)
    return root
