"""Tiny detection datasets in the published layouts, written by the tests (shapes with known masks)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image, ImageDraw

CCP_LABELS = ["null", "accessories", "bag", "belt", "blazer", "blouse", "bodysuit", "boots", "bra", "bracelet", "cape",
              "cardigan", "clogs", "coat", "dress", "earrings", "flats", "glasses", "gloves", "hair", "hat", "heels",
              "hoodie", "intimate", "jacket", "jeans", "jumper", "leggings", "loafers", "necklace", "panties", "pants",
              "pumps", "purse", "ring", "romper", "sandals", "scarf", "shirt", "shoes", "shorts", "skin", "skirt",
              "sneakers", "socks", "stockings", "suit", "sunglasses", "sweater", "sweatshirt", "swimwear", "t-shirt",
              "tie", "tights", "top", "vest", "wallet", "watch", "wedges"]


def write_ccp(root: Path, count: int = 2, size=(120, 160)) -> Path:
    """Each photo: a blouse with a vest beside it (one 'top'), jeans, two separate shoes, skin, hair and
    a 2-pixel ring (below the minimum area)."""
    (root / "photos").mkdir(parents=True)
    (root / "annotations" / "pixel-level").mkdir(parents=True)
    names = np.empty((1, len(CCP_LABELS)), dtype=object)
    for i, name in enumerate(CCP_LABELS):
        names[0, i] = np.array([name])
    scipy.io.savemat(root / "label_list.mat", {"label_list": names})
    w, h = size
    for n in range(1, count + 1):
        labels = np.zeros((h, w), dtype=np.uint8)
        labels[10:20, 40:80] = CCP_LABELS.index("hair")
        labels[20:70, 30:60] = CCP_LABELS.index("blouse")
        labels[20:70, 60:90] = CCP_LABELS.index("vest")
        labels[70:130, 35:85] = CCP_LABELS.index("jeans")
        labels[135:150, 30:50] = CCP_LABELS.index("shoes")
        labels[135:150, 70:90] = CCP_LABELS.index("sneakers")
        labels[5:7, 5:6] = CCP_LABELS.index("ring")
        labels[60:70, 10:28] = CCP_LABELS.index("skin")
        scipy.io.savemat(root / "annotations" / "pixel-level" / f"{n:04d}.mat", {"groundtruth": labels})
        palette = np.random.default_rng(n).integers(0, 255, (len(CCP_LABELS), 3), dtype=np.uint8)
        Image.fromarray(palette[labels]).save(root / "photos" / f"{n:04d}.jpg")
    return root


def write_deepfashion2(root: Path, count: int = 4, size=(128, 128), seed: int = 0) -> Path:
    """Images with a red rectangle (short_sleeved_shirt, id 1) and a blue triangle (trousers, id 8)."""
    (root / "image").mkdir(parents=True)
    (root / "annos").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    w, h = size
    for n in range(1, count + 1):
        image = Image.new("RGB", size, (235, 235, 235))
        draw = ImageDraw.Draw(image)
        x, y = int(rng.integers(5, 30)), int(rng.integers(5, 30))
        rect = [x, y, x + 50, y + 40]
        draw.rectangle(rect, fill=(220, 20, 20))
        triangle = [70, 120, 120, 120, 95, 60]
        draw.polygon(triangle, fill=(20, 20, 220))
        image.save(root / "image" / f"{n:06d}.jpg", quality=95)
        anno = {
            "source": "user", "pair_id": n,
            "item1": {"category_id": 1, "category_name": "short_sleeved_shirt", "bounding_box": [x, y, x + 51, y + 41],
                      "segmentation": [[x, y, x + 50, y, x + 50, y + 40, x, y + 40]], "style": 1,
                      "occlusion": 1, "zoom_in": 1, "viewpoint": 2, "scale": 2, "landmarks": []},
            "item2": {"category_id": 8, "category_name": "trousers", "bounding_box": [70, 60, 121, 121],
                      "segmentation": [triangle], "style": 0, "occlusion": 2, "zoom_in": 1, "viewpoint": 2,
                      "scale": 2, "landmarks": []},
        }
        (root / "annos" / f"{n:06d}.json").write_text(json.dumps(anno))
    return root
