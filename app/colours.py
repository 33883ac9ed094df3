"""Measured dominant colours: pixels assigned to the nearest colour of a fixed named palette (in CIELAB),
reported as the mean hex of the pixels per palette colour and its share of the pixels.

A garment's colours are read inside its mask. The whole image's are read without its backdrop: the
white of a product shot, the wall or sheet behind a phone photo, found as the region joined to the
image's border whose colour stays near the border's (backdrop_mask); a storefront asking for a
product's colours wants the product's, not the studio's.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

PALETTE = {
    "black": (20, 20, 20), "charcoal": (64, 64, 64), "grey": (128, 128, 128), "silver": (192, 192, 192),
    "white": (245, 245, 245), "cream": (240, 228, 200), "beige": (210, 190, 150), "khaki": (170, 150, 100),
    "brown": (110, 70, 40), "tan": (190, 140, 90), "maroon": (110, 20, 30), "red": (200, 30, 40),
    "pink": (240, 150, 180), "magenta": (200, 40, 150), "orange": (240, 130, 30), "yellow": (240, 210, 50),
    "mustard": (200, 160, 40), "olive": (110, 110, 40), "green": (40, 140, 60), "teal": (20, 128, 128),
    "turquoise": (60, 200, 200), "sky blue": (130, 190, 235), "blue": (40, 80, 200), "navy": (25, 35, 90),
    "purple": (110, 50, 140), "lavender": (190, 170, 220),
}
NAMES = tuple(PALETTE)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB uint8 (N, 3) -> CIELAB (N, 3), D65."""
    c = rgb.astype(np.float64) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    xyz = c @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]).T
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)


PALETTE_LAB = rgb_to_lab(np.array(list(PALETTE.values()), dtype=np.uint8))


def dominant_colours(image: np.ndarray, mask: np.ndarray | None = None, top: int = 3, min_share: float = 0.05,
                     max_pixels: int = 4096) -> list[dict]:
    flat = image.reshape(-1, 3)
    chosen = np.flatnonzero(mask) if mask is not None and mask.any() else np.arange(len(flat))
    # Every k-th pixel: deterministic and cheap, where a random sample without replacement shuffles
    # all of them (the colours of ~10 items per photo were a fifth of the request time). 4,096 pixels
    # put a share within about +-1.5% (95%).
    pixels = flat[chosen[:: max(1, -(-len(chosen) // max_pixels))]]
    if not len(pixels):
        return []
    distances = ((rgb_to_lab(pixels)[:, None, :] - PALETTE_LAB[None]) ** 2).sum(axis=2)
    nearest = distances.argmin(axis=1)
    counts = np.bincount(nearest, minlength=len(NAMES))
    colours = []
    for index in np.argsort(-counts)[:top]:
        share = counts[index] / len(pixels)
        if share < min_share:
            break
        mean = pixels[nearest == index].mean(axis=0).round().astype(int)
        colours.append({"hex": "#{:02x}{:02x}{:02x}".format(*mean), "name": NAMES[index], "share": round(float(share), 4)})
    return colours


# How far (CIELAB delta E, 1976) from the border's median colour a pixel may be and still be backdrop: a
# JPEG's white or a plain wall varies by a few units, a garment differs by tens.
BACKDROP_DELTA_E = 12.0
BACKDROP_SIDE = 192  # the backdrop is found, and the colours read, on a copy this large at most
WHOLE_IMAGE_COLOURS = "|colours:no-backdrop"  # in the analysis key: how the whole image's colours were read


def backdrop_mask(image: np.ndarray) -> np.ndarray | None:
    """The pixels of `image` that are its backdrop (True), or None when it has none worth leaving out:
    under 5% of the picture, or over 95% (a garment the colour of its backdrop, filling the frame)."""
    h, w = image.shape[:2]
    lab = rgb_to_lab(image.reshape(-1, 3)).reshape(h, w, 3)
    border = np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])
    near = ((lab - np.median(border, axis=0)) ** 2).sum(axis=2) < BACKDROP_DELTA_E ** 2
    regions, _ = ndimage.label(near)
    touching = np.unique(np.concatenate([regions[0], regions[-1], regions[:, 0], regions[:, -1]]))
    backdrop = np.isin(regions, touching[touching > 0])
    return backdrop if 0.05 <= backdrop.mean() <= 0.95 else None


def whole_image_colours(image: np.ndarray) -> list[dict]:
    """Dominant colours of a whole image without its backdrop (the whole picture when it has none)."""
    image = small_copy(image)
    backdrop = backdrop_mask(image)
    return dominant_colours(image, None if backdrop is None else ~backdrop)


def small_copy(image: np.ndarray) -> np.ndarray:
    """Every k-th pixel of each k-th row, at most BACKDROP_SIDE on the longer side: a sample of the
    picture's colours, near free where resizing a 12-megapixel photo costs 100 ms."""
    step = -(-max(image.shape[:2]) // BACKDROP_SIDE)
    return image[::step, ::step] if step > 1 else image
