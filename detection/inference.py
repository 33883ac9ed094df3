"""Load a detector bundle once; detect garments in batches of RGB images; crop detections for the classifier."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torchvision.ops import nms

from .bundle import load_bundle
from .folding import fold_batch_norms


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


# Arithmetic of the backbone on the CPU: float32, or bfloat16 (on a CPU with native bfloat16 instructions
# it takes a fifth off the detect stage with the same held-out AP: docs/detector.md, "Serving speed"), or
# auto: bfloat16 where the CPU has those instructions, float32 elsewhere (emulated, bfloat16 is slower).
# A GPU runs float16 autocast throughout whichever is named.
COMPUTE_DTYPES = ("auto", "float32", "bfloat16")


def native_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX-512 BF16, or AMX tiles), which oneDNN uses."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_compute_dtype(name: str, device: torch.device) -> str:
    """The dtype `name` means on `device`: "auto" becomes bfloat16 on a CPU with native bfloat16, else
    float32; on a GPU the backbone's dtype is autocast's, reported as float32 (the weights' dtype)."""
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"detector compute dtype {name!r}: choose from {', '.join(COMPUTE_DTYPES)}")
    if device.type != "cpu":
        return "float32"
    if name == "auto":
        return "bfloat16" if native_bfloat16() else "float32"
    return name


class Detector:
    def __init__(self, bundle_dir: str | Path, device: str = "auto", batch_size: int = 4,
                 compute_dtype: str = "float32", **overrides):
        self.bundle_dir = Path(bundle_dir)
        self.device = pick_device(device)
        self.compute_dtype = resolve_compute_dtype(compute_dtype, self.device)
        self.model, self.manifest = load_bundle(self.bundle_dir, {k: v for k, v in overrides.items() if v is not None})
        # Serving-only speed-ups, same detections (tests/detection/test_folding.py): the frozen batch
        # norms fold into their convolutions, and NHWC feature maps suit both oneDNN's depthwise
        # convolutions on the CPU and tensor cores (docs/detector.md, "Serving speed").
        self.folded_batch_norms = fold_batch_norms(self.model)
        self.model.to(self.device).to(memory_format=torch.channels_last)
        if self.compute_dtype == "bfloat16":
            self.model.backbone = LowPrecisionBackbone(self.model.backbone, torch.bfloat16)
        self.classes = self.manifest["classes"]
        self.batch_size = batch_size
        # bfloat16 finds the same garments with slightly different boxes and scores, so its detections are
        # named apart: a stored analysis made in the other arithmetic is made again, not served as this one's.
        self.version = f"{self.manifest['name']}:{self.manifest['version']}"
        if self.compute_dtype == "bfloat16":
            self.version += "+bfloat16"
        # IoU of the suppression across classes: the override, else the bundle's (None: off).
        self.class_agnostic_nms = overrides.get("class_agnostic_nms") or self.manifest["model"].get("class_agnostic_nms")

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Garments in each image: the model's per-class detections, then one box per garment across classes."""
        return [suppress_across_classes(found, self.class_agnostic_nms) for found in self.detect_per_class(images)]

    def autocast(self) -> torch.autocast:
        """The forward pass's autocast: float16 on a GPU; off on the CPU (a bfloat16 backbone casts itself)."""
        return torch.autocast(self.device.type, enabled=self.device.type == "cuda")

    @torch.inference_mode()
    def detect_per_class(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """The model's own output: NMS within each class only, so a garment can come back under two labels."""
        results = []
        for start in range(0, len(images), self.batch_size):
            chunk = [to_tensor(image, self.device) for image in images[start:start + self.batch_size]]
            with self.autocast():
                outputs = self.model(chunk)
            for output in outputs:
                masks = (output["masks"][:, 0] > 0.5).cpu().numpy()
                results.append([
                    Detection(tuple(float(v) for v in box), mask, self.classes[int(label) - 1], float(score))
                    for box, mask, label, score in zip(output["boxes"].cpu().tolist(), masks,
                                                       output["labels"].cpu().tolist(), output["scores"].cpu().tolist())
                ])
        return results


class LowPrecisionBackbone(torch.nn.Module):
    """The backbone + FPN (most of the detector's time) under autocast, its feature maps handed on in
    float32: box decoding in bfloat16 would round coordinates near 800 px to multiples of 4."""

    def __init__(self, backbone: torch.nn.Module, dtype: torch.dtype):
        super().__init__()
        self.body, self.dtype = backbone, dtype
        self.out_channels = backbone.out_channels  # what torchvision's heads read

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.autocast(images.device.type, dtype=self.dtype):
            features = self.body(images)
        return type(features)((name, f.float()) for name, f in features.items())


def suppress_across_classes(detections: list[Detection], iou: float | None) -> list[Detection]:
    """NMS over all detections whatever their class: of boxes overlapping at IoU > `iou` only the highest
    scoring one stays (its label is the garment's). Order by score is kept; `iou` None keeps everything."""
    return [detections[i] for i in kept_across_classes([d.box for d in detections], [d.score for d in detections], iou)]


def kept_across_classes(boxes: Sequence[Sequence[float]], scores: Sequence[float], iou: float | None) -> list[int]:
    """Indices (by falling score) that class-agnostic NMS keeps of `boxes` (x1, y1, x2, y2)."""
    if iou is None or len(boxes) < 2:
        return list(range(len(boxes)))
    return nms(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), torch.tensor(scores, dtype=torch.float32),
               float(iou)).tolist()


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
