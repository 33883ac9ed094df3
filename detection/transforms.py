"""Training augmentation with torchvision.transforms.v2, which moves boxes and masks with the pixels.

Scale jitter is not one of these transforms: torchvision's detection models resize every image to their
own `min_size` first, which would undo any resizing done here. `scale_jitter_sizes` gives the model's
transform a set of shorter sides instead; in training it draws one per image (GeneralizedRCNNTransform).
"""
from __future__ import annotations

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from .records import Instance


def train_transforms(min_size: int | None = None) -> v2.Compose:
    """Flips and colour jitter (`min_size` is unused: kept for callers; scale jitter is `scale_jitter_sizes`)."""
    return v2.Compose([
        v2.RandomHorizontalFlip(0.5),
        v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02),
        v2.SanitizeBoundingBoxes(min_size=2),
    ])


def scale_jitter_sizes(min_size: int, low: float = 0.75, high: float = 1.25, step: int = 32) -> tuple[int, ...]:
    """Shorter sides from `low` to `high` times `min_size` in steps of `step` pixels (min_size always
    among them), for the model's transform to draw from while training."""
    sizes = set(range(int(round(min_size * low)), int(round(min_size * high)) + 1, step)) | {min_size}
    return tuple(sorted(sizes))


def jitter_model_scale(model, sizes: tuple[int, ...], aspect: float) -> None:
    """Train `model` at shorter sides drawn from `sizes`; its longer-side limit follows (`aspect` =
    max_size / min_size), or the largest sizes would be capped back to the serving size. Only the
    training copy changes: a bundle is rebuilt from its manifest's single size."""
    model.transform.min_size = tuple(sizes)
    model.transform.max_size = int(round(max(sizes) * aspect))


def load_sample(instances: list[Instance], image: np.ndarray, transforms: v2.Compose | None = None):
    """(image float tensor CxHxW in [0, 1], target dict) as torchvision's detection models expect."""
    h, w = image.shape[:2]
    boxes = torch.tensor([i.box for i in instances], dtype=torch.float32).reshape(-1, 4)
    masks = torch.from_numpy(np.stack([i.mask for i in instances])) if instances else torch.zeros((0, h, w), dtype=torch.bool)
    target = {
        "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(h, w)),
        "masks": tv_tensors.Mask(masks.to(torch.uint8)),
        "labels": torch.tensor([i.category for i in instances], dtype=torch.int64),
    }
    tensor = tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1))
    if transforms is not None:
        tensor, target = transforms(tensor, target)
    return v2.functional.to_dtype(tensor, torch.float32, scale=True).as_subclass(torch.Tensor), {
        "boxes": target["boxes"].as_subclass(torch.Tensor), "masks": target["masks"].as_subclass(torch.Tensor),
        "labels": target["labels"]}


def downscale(image: np.ndarray, instances: list[Instance], shorter_side: int) -> tuple[np.ndarray, list[Instance]]:
    """The image and its instances with the shorter side at most `shorter_side` pixels (never enlarged)."""
    h, w = image.shape[:2]
    scale = shorter_side / min(h, w)
    if scale >= 1:
        return image, instances
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    small = v2.functional.resize(torch.from_numpy(image).permute(2, 0, 1), list(size), antialias=True)
    out = []
    for instance in instances:
        mask = v2.functional.resize(torch.tensor(instance.mask)[None], list(size),
                                    interpolation=v2.InterpolationMode.NEAREST)[0].numpy()
        if mask.any():
            box = tuple(float(c) * f for c, f in zip(instance.box, (size[1] / w, size[0] / h) * 2))
            out.append(Instance(instance.category, box, mask, instance.attributes))
    return small.permute(1, 2, 0).numpy(), out
