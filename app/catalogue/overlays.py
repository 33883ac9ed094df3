"""What the detail page draws over an image: a garment's mask as a translucent PNG."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

# One colour per garment position (repeats after eight); the boxes use the same ones.
COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c")
MASK_MAX_SIDE = 384  # the overlay is stretched to the displayed image; more pixels add nothing


def colour_of(position: int) -> str:
    return COLOURS[(position - 1) % len(COLOURS)] if position > 0 else "#222222"


def mask_png(rle: dict, position: int, alpha: int = 120) -> bytes:
    """COCO RLE -> RGBA PNG: the garment's colour inside the mask, transparent elsewhere."""
    mask = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}).astype(bool)
    height, width = mask.shape
    scale = min(1.0, MASK_MAX_SIDE / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.NEAREST)) > 0
    rgba = np.zeros((*small.shape, 4), np.uint8)
    hex_colour = colour_of(position).lstrip("#")
    rgba[small] = [int(hex_colour[i:i + 2], 16) for i in (0, 2, 4)] + [alpha]
    out = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(out, "PNG", optimize=True)
    return out.getvalue()
