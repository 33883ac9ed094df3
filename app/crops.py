"""What the classifier sees of a garment the detector found (`GARMENT_CROP`).

- `box` (default): the detection's box with 10% of context on every side, the photo as it is. That is
  how the classifier's street crops are cut for training and evaluation
  (`classification.photo_datasets.STREET_CROP_MARGIN`), so the served crops look like what it learnt.
- `masked`: the same box with every pixel outside the garment's mask painted white, like a catalogue
  photo: what the first, catalogue-only classifier wanted. The real-photo classifier reads it far
  worse: end to end on the held-out street photos (classifier c0bb2de3031c), articleType group accuracy
  0.674 (masked) against 0.723 (box) with the detector prior, 0.498 against 0.691 without it (docs/detector.md,
  "How a garment is cut out").

The mask itself is kept either way: items store it and dominant colours are measured inside it.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from classification.photo_datasets import STREET_CROP_MARGIN
from detection.inference import crop_detection

STYLES = ("box", "masked")


def check_style(style: str) -> str:
    if style not in STYLES:
        raise ValueError(f"GARMENT_CROP must be one of {', '.join(STYLES)}, not {style!r}")
    return style


def garment_crop(image: np.ndarray, box: Sequence[float], mask: np.ndarray | None, style: str) -> np.ndarray:
    return crop_detection(image, box, padding=STREET_CROP_MARGIN, mask=mask if style == "masked" else None)


def key_suffix(style: str) -> str:
    """What `style` adds to an analysis' bundle key and to an embedding's model name (tags and vectors
    depend on it): nothing for masked, the first way, so what was stored with it stays valid."""
    return "" if style == "masked" else f"|crop:{style}"
