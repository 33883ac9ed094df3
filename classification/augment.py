"""Augmentation that makes a catalogue thumbnail look like a photo, and a photo like another photo.

Catalogue images are products on white: the near-white region connected to the border is replaced by
a texture or a patch of a real photo's background. Then, for every kind: a random resized crop,
rotation, a perspective-like corner jitter, horizontal flip, brightness/contrast/saturation jitter
(no hue: colour is a label), blur, downscale-then-upscale, letterboxing to the model input (the
serving preprocessing) and JPEG artefacts. PIL + numpy, so both Keras backends share it.

`catalogue_light`: thumbnails get only a mild crop and the flip, for a network that reads catalogue
thumbnails alone (the photo look costs the catalogue its fit: docs/classifier-runs.md).
"""
from __future__ import annotations

import io
import os
from typing import Sequence

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter
from scipy import ndimage

from .photo_datasets import STREET_CROP_MARGIN
from .preprocess import letterbox

NEAR_WHITE = 232


def background_mask(image: np.ndarray) -> np.ndarray:
    """True where a pixel is near-white and connected to the image border (the product's backdrop)."""
    white = (image >= NEAR_WHITE).all(axis=2)
    components, _ = ndimage.label(white)
    border = np.unique(np.concatenate([components[0], components[-1], components[:, 0], components[:, -1]]))
    return np.isin(components, border[border > 0])


class PhotoAugmenter:
    def __init__(self, input_size: tuple[int, int], backgrounds: Sequence[np.ndarray] = (), seed: int = 0,
                 background_probability: float = 0.6, street_margin: float = STREET_CROP_MARGIN,
                 catalogue_light: bool = False):
        self.input_size = input_size
        self.catalogue_light = catalogue_light
        # Street crops carry `street_margin` of context on every side. The random crop keeps at least
        # 0.75 of a crop cut with the pipeline's margin (about the garment's box), whatever the margin.
        self.street_min_area = min(1.0, 0.75 * ((1 + 2 * STREET_CROP_MARGIN) / (1 + 2 * street_margin)) ** 2)
        self.backgrounds = list(backgrounds)
        self.background_probability = background_probability
        self.seed, self.pid = seed, os.getpid()
        self.rng = np.random.default_rng(seed)

    def __call__(self, image: np.ndarray, kind: str) -> np.ndarray:
        if os.getpid() != self.pid:
            # A forked batch worker: a stream of its own, else every worker (and every epoch's fresh
            # workers) would repeat the parent's random draws. Not reproducible run to run (pids);
            # threads, the default, are.
            self.pid = os.getpid()
            self.rng = np.random.default_rng([self.seed, self.pid, int(np.random.randint(2**31))])
        rng = self.rng
        if kind == "catalogue" and self.catalogue_light:
            return self.lightly(image)
        if kind == "catalogue" and rng.random() < self.background_probability:
            image = self.replace_background(image)
        pil = Image.fromarray(image)
        pil = self.random_resized_crop(pil, min_area=self.street_min_area if kind == "street" else 0.5)
        if rng.random() < 0.3:
            pil = pil.rotate(rng.uniform(-15, 15), resample=Image.BILINEAR, expand=False,
                             fillcolor=tuple(int(c) for c in np.asarray(pil).reshape(-1, 3).mean(0)))
        if rng.random() < 0.25:
            pil = self.corner_jitter(pil, 0.08)
        if rng.random() < 0.5:
            pil = pil.transpose(Image.FLIP_LEFT_RIGHT)
        if rng.random() < 0.8:
            for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
                pil = enhance(pil).enhance(rng.uniform(0.75, 1.25))
        if rng.random() < 0.15:
            pil = pil.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.2)))
        if rng.random() < 0.2:
            w, h = pil.size
            f = rng.uniform(0.35, 0.7)
            pil = pil.resize((max(8, int(w * f)), max(8, int(h * f))), Image.BILINEAR).resize((w, h), Image.BILINEAR)
        out = letterbox(np.asarray(pil), *self.input_size)
        if rng.random() < 0.25:
            buffer = io.BytesIO()
            Image.fromarray(out).save(buffer, "JPEG", quality=int(rng.integers(30, 85)))
            out = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
        return out

    def lightly(self, image: np.ndarray) -> np.ndarray:
        """A thumbnail as a catalogue reads it: at least 85% of it, maybe mirrored, letterboxed."""
        pil = self.random_resized_crop(Image.fromarray(image), min_area=0.85)
        if self.rng.random() < 0.5:
            pil = pil.transpose(Image.FLIP_LEFT_RIGHT)
        return letterbox(np.asarray(pil), *self.input_size)

    def replace_background(self, image: np.ndarray) -> np.ndarray:
        mask = background_mask(image)
        if not mask.any():
            return image
        h, w = image.shape[:2]
        rng = self.rng
        if self.backgrounds and rng.random() < 0.7:
            source = self.backgrounds[rng.integers(len(self.backgrounds))]
            sh, sw = source.shape[:2]
            ch, cw = max(8, int(sh * rng.uniform(0.2, 0.5))), max(8, int(sw * rng.uniform(0.2, 0.5)))
            y, x = rng.integers(0, sh - ch + 1), rng.integers(0, sw - cw + 1)
            patch = np.asarray(Image.fromarray(source[y:y + ch, x:x + cw]).resize((w, h), Image.BILINEAR))
        else:  # a flat or graded colour with sensor-like noise
            top, bottom = rng.integers(40, 256, size=(2, 3))
            ramp = np.linspace(0, 1, h)[:, None, None]
            patch = top * (1 - ramp) + bottom * ramp + rng.normal(0, 6, size=(h, w, 3))
            patch = np.clip(np.broadcast_to(patch, (h, w, 3)), 0, 255).astype(np.uint8)
        out = image.copy()
        out[mask] = patch[mask]
        return out

    def random_resized_crop(self, pil: Image.Image, min_area: float) -> Image.Image:
        w, h = pil.size
        area = self.rng.uniform(min_area, 1.0) * w * h
        aspect = np.exp(self.rng.uniform(np.log(0.8), np.log(1.25)))
        cw, ch = min(w, int(round(np.sqrt(area * aspect)))), min(h, int(round(np.sqrt(area / aspect))))
        x, y = self.rng.integers(0, w - cw + 1), self.rng.integers(0, h - ch + 1)
        return pil.crop((x, y, x + cw, y + ch))

    def corner_jitter(self, pil: Image.Image, amount: float) -> Image.Image:
        """Each corner moved by up to `amount` of the size: the look of a photo taken at an angle."""
        w, h = pil.size
        d = self.rng.uniform(-amount, amount, size=8) * np.array([w, h] * 4)
        quad = np.array([0, 0, 0, h, w, h, w, 0], dtype=float) + d
        return pil.transform((w, h), Image.QUAD, tuple(quad), resample=Image.BILINEAR)
