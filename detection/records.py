"""One internal record format for every detection dataset, the readers that produce it, and COCO export.

Instances are loaded lazily (`record.instances()`): full-resolution masks of a whole dataset do not
fit in memory at once.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import scipy.io
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils
from scipy import ndimage

from .taxonomy import CCP_CLASSES, DEEPFASHION2, ccp_label_to_class


@dataclasses.dataclass
class Instance:
    category: int  # 1-based class index into the dataset's taxonomy
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels
    mask: np.ndarray  # HxW bool
    attributes: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class DetectionRecord:
    image_id: int
    image_path: Path
    width: int
    height: int
    load: Callable[[], list[Instance]] = dataclasses.field(repr=False)

    def instances(self) -> list[Instance]:
        return self.load()


def box_of(mask: np.ndarray) -> tuple[float, float, float, float]:
    ys, xs = np.nonzero(mask)
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


# ---- Clothing Co-Parsing -------------------------------------------------------------------------

def ccp_label_names(root: Path) -> list[str]:
    raw = scipy.io.loadmat(root / "label_list.mat")["label_list"][0]
    return [str(x[0]) if len(x) else "" for x in raw]


def ccp_instances(label_map: np.ndarray, pixel_to_class: dict[int, int], min_area: int) -> list[Instance]:
    """Per-pixel labels -> instances: one mask per detector class, closed with a 5x5 structuring
    element (joins a garment cut by a strap or a thin occluder), then split into 8-connected
    components; components under `min_area` pixels are dropped."""
    classes = np.zeros_like(label_map, dtype=np.int16)
    for value, cls in pixel_to_class.items():
        classes[label_map == value] = cls
    instances = []
    for cls in np.unique(classes):
        if cls == 0:
            continue
        pixels = classes == cls
        closed = ndimage.binary_closing(pixels, structure=np.ones((5, 5))) | pixels
        components, count = ndimage.label(closed, structure=np.ones((3, 3)))
        for component in range(1, count + 1):
            mask = (components == component) & pixels  # the closing only decides grouping
            if mask.sum() >= min_area:
                instances.append(Instance(int(cls), box_of(mask), mask))
    return instances


def read_ccp(root: str | Path, min_area_fraction: float = 0.001,
             pixel_to_class: dict[int, int] | None = None) -> list[DetectionRecord]:
    """Photos with a pixel-level annotation (`annotations/pixel-level/<NNNN>.mat`, variable `groundtruth`).
    `pixel_to_class` maps pixel values to instance classes (default: the detector's garment groups)."""
    root = Path(root)
    if pixel_to_class is None:
        pixel_to_class = ccp_label_to_class(ccp_label_names(root))
    records = []
    for mat in sorted((root / "annotations" / "pixel-level").glob("*.mat")):
        photo = root / "photos" / f"{mat.stem}.jpg"
        if not photo.is_file():
            continue
        with Image.open(photo) as image:
            width, height = image.size
        min_area = max(16, int(min_area_fraction * width * height))

        def load(mat=mat, min_area=min_area):
            label_map = scipy.io.loadmat(mat)["groundtruth"]
            return ccp_instances(label_map, pixel_to_class, min_area)

        records.append(DetectionRecord(int(mat.stem), photo, width, height, load))
    return records


# ---- DeepFashion2 ---------------------------------------------------------------------------------

def polygons_to_mask(polygons: Sequence[Sequence[float]], width: int, height: int) -> np.ndarray:
    canvas = Image.new("1", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for polygon in polygons:
        if len(polygon) >= 6:
            draw.polygon([(polygon[i], polygon[i + 1]) for i in range(0, len(polygon) - 1, 2)], fill=1)
    return np.asarray(canvas, dtype=bool)


def read_deepfashion2(root: str | Path) -> list[DetectionRecord]:
    """DeepFashion2's layout: `image/<id>.jpg` + `annos/<id>.json` with `item1`, `item2`, ..."""
    root = Path(root)
    records = []
    for anno in sorted((root / "annos").glob("*.json")):
        photo = root / "image" / f"{anno.stem}.jpg"
        if not photo.is_file():
            continue
        with Image.open(photo) as image:
            width, height = image.size

        def load(anno=anno, width=width, height=height):
            data = json.loads(anno.read_text())
            out = []
            for key in sorted((k for k in data if k.startswith("item")), key=lambda k: int(k[4:])):
                item = data[key]
                category = int(item["category_id"])
                if not 1 <= category <= len(DEEPFASHION2):
                    raise ValueError(f"{anno}: {key} has category_id {category}, outside 1..{len(DEEPFASHION2)}")
                mask = polygons_to_mask(item.get("segmentation") or [], width, height)
                x1, y1, x2, y2 = (float(v) for v in item["bounding_box"])
                if not mask.any():  # no polygon: fall back to the box
                    mask[int(y1):int(y2), int(x1):int(x2)] = True
                attributes = {k: item[k] for k in ("occlusion", "zoom_in", "viewpoint", "style") if k in item}
                out.append(Instance(category, (x1, y1, x2, y2), mask, attributes))
            return out

        records.append(DetectionRecord(int(anno.stem), photo, width, height, load))
    return records


READERS = {"ccp": (read_ccp, CCP_CLASSES), "deepfashion2": (read_deepfashion2, DEEPFASHION2)}


def encode_mask(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def to_coco(records: Sequence[DetectionRecord], classes: Sequence[str]) -> dict:
    """COCO instances JSON (RLE masks) for the records, so standard tools can read our data."""
    images, annotations = [], []
    for record in records:
        images.append({"id": record.image_id, "file_name": record.image_path.name,
                       "width": record.width, "height": record.height})
        for instance in record.instances():
            x1, y1, x2, y2 = instance.box
            annotations.append({
                "id": len(annotations) + 1, "image_id": record.image_id, "category_id": instance.category,
                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": float(instance.mask.sum()),
                "segmentation": encode_mask(instance.mask), "iscrowd": 0})
    return {"images": images, "annotations": annotations,
            "categories": [{"id": i + 1, "name": name, "supercategory": "garment"} for i, name in enumerate(classes)]}


def split_records(records: Sequence[DetectionRecord], val_fraction: float = 0.15, seed: int = 1234) -> dict[str, list[int]]:
    ids = sorted(r.image_id for r in records)
    rng = np.random.default_rng(seed)
    rng.shuffle(ids)
    n_val = int(round(len(ids) * val_fraction))
    return {"train": sorted(ids[n_val:]), "val": sorted(ids[:n_val])}
