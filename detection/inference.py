"""Load a detector bundle once; detect garments in batches of RGB images; crop detections for the classifier."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .bundle import load_bundle


@dataclasses.dataclass
class Detection:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels
    mask: np.ndarray  # HxW bool, same size as the image
    label: str
    score: float


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def to_tensor(image: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).to(device).permute(2, 0, 1).float().div_(255.0)


class Detector:
    def __init__(self, bundle_dir: str | Path, device: str = "auto", batch_size: int = 4, **overrides):
        self.bundle_dir = Path(bundle_dir)
        self.device = pick_device(device)
        self.model, self.manifest = load_bundle(self.bundle_dir, {k: v for k, v in overrides.items() if v is not None})
        self.model.to(self.device)
        if self.device.type == "cuda":  # tensor cores want NHWC
            self.model.to(memory_format=torch.channels_last)
        self.classes = self.manifest["classes"]
        self.batch_size = batch_size
        self.version = f"{self.manifest['name']}:{self.manifest['version']}"

    @torch.inference_mode()
    def detect(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        results = []
        for start in range(0, len(images), self.batch_size):
            chunk = [to_tensor(image, self.device) for image in images[start:start + self.batch_size]]
            with torch.autocast(self.device.type, enabled=self.device.type == "cuda"):
                outputs = self.model(chunk)
            for output in outputs:
                masks = (output["masks"][:, 0] > 0.5).cpu().numpy()
                results.append([
                    Detection(tuple(float(v) for v in box), mask, self.classes[int(label) - 1], float(score))
                    for box, mask, label, score in zip(output["boxes"].cpu().tolist(), masks,
                                                       output["labels"].cpu().tolist(), output["scores"].cpu().tolist())
                ])
        return results


def crop_detection(image: np.ndarray, box: Sequence[float], padding: float = 0.1, mask: np.ndarray | None = None,
                   background: int = 255) -> np.ndarray:
    """Crop `box` from `image` with `padding` (a fraction of the box's size) on every side, clipped to the
    image; always at least 1x1. With `mask`, pixels outside it are painted `background` (white, like the
    catalogue photos the classifier learnt from)."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    pad_x, pad_y = (x2 - x1) * padding, (y2 - y1) * padding
    left = int(np.clip(np.floor(x1 - pad_x), 0, width - 1))
    top = int(np.clip(np.floor(y1 - pad_y), 0, height - 1))
    right = int(np.clip(np.ceil(x2 + pad_x), left + 1, width))
    bottom = int(np.clip(np.ceil(y2 + pad_y), top + 1, height))
    crop = image[top:bottom, left:right].copy()
    if mask is not None:
        inside = mask[top:bottom, left:right]
        if inside.any():
            crop[~inside] = background
    return crop
