"""The one preprocessing function of a bundle, shared by training, evaluation and serving.

Images are letterboxed (aspect kept, padded with white, the catalogue's background) to the bundle's
input size and kept as uint8; scaling to the network's range happens inside the model, so no caller
can forget it.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

PAD_VALUE = 255
PREPROCESSING = {
    "resize": "letterbox (aspect kept, bilinear, centred, padded with white)",
    "channels": "RGB",
    "dtype": "uint8 into the model; the model rescales x/127.5 - 1 itself",
}


def letterbox(image: np.ndarray, height: int, width: int) -> np.ndarray:
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return np.ascontiguousarray(image[..., :3])
    scale = min(height / h, width / w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    resized = np.asarray(Image.fromarray(image[..., :3]).resize((new_w, new_h), Image.BILINEAR))
    out = np.full((height, width, 3), PAD_VALUE, dtype=np.uint8)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    out[top:top + new_h, left:left + new_w] = resized
    return out


def preprocess_batch(images: Sequence[np.ndarray], input_size: tuple[int, int]) -> np.ndarray:
    """List of HxWx3 uint8 RGB arrays of any size -> (N, H, W, 3) uint8 batch."""
    height, width = input_size
    batch = np.empty((len(images), height, width, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        if image.ndim != 3 or image.shape[2] < 3 or image.dtype != np.uint8:
            raise ValueError(f"image {i}: expected HxWx3 uint8 RGB, got {image.shape} {image.dtype}")
        batch[i] = letterbox(image, height, width)
    return batch
