"""Decoding any image into the HxWx3 uint8 sRGB array every model here takes.

Phones save HEIC (pillow-heif decodes it; Pillow itself reads AVIF, WebP and the rest) and tag their
photos with a wide-gamut colour profile (Display P3); print-ready product shots come in Adobe RGB or
CMYK with theirs. Pixels are converted from the embedded ICC profile to sRGB, the space the training
images were in (none of them carried a profile) and the one the colour tags and swatches are read in.
"""
from __future__ import annotations

import functools
import io
from pathlib import Path

import numpy as np
import pillow_heif
from PIL import Image, ImageCms, ImageOps

pillow_heif.register_heif_opener()

_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
# Modes a colour transform can read; others (16-bit, palette) are converted first or left as they are.
_MANAGED_MODES = ("RGB", "RGBA", "CMYK", "L")


def load_rgb(path: str | Path) -> np.ndarray:
    """Decode an image file as an HxWx3 uint8 RGB array (grayscale, CMYK, palette, alpha handled)."""
    with Image.open(path) as image:
        return to_rgb_array(image)


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """The image's pixels as displayed: EXIF rotation, colour profile (to sRGB), alpha on white.

    `image` is changed in place where that saves a copy of a 12-megapixel photo: pass one you own.
    """
    ImageOps.exif_transpose(image, in_place=True)
    image = _in_srgb(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Flatten transparency onto white, the catalogue's background.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    elif image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float32)
        scale = 65535.0 if array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / scale * 255.0, 0, 255).astype(np.uint8))
    return np.array(image if image.mode == "RGB" else image.convert("RGB"), dtype=np.uint8)  # a writable copy


def converts_colour(image: Image.Image) -> bool:
    """Whether decoding `image` converts its colours: it carries a profile other than sRGB. Reads the
    header only (the profile is there), not the pixels."""
    return _transform_for(image) is not None


def _in_srgb(image: Image.Image) -> Image.Image:
    """The image with its embedded ICC profile applied (to sRGB); as it is when it has none."""
    transform = _transform_for(image)
    if transform is None:
        return image
    if image.mode != transform.input_mode:
        image = image.convert(transform.input_mode)  # a palette or grey-with-alpha image
    try:
        if transform.output_mode == image.mode:
            ImageCms.applyTransform(image, transform, inPlace=True)
            return image
        return ImageCms.applyTransform(image, transform)
    except (ImageCms.PyCMSError, OSError, ValueError):
        return image


def _transform_for(image: Image.Image) -> ImageCms.ImageCmsTransform | None:
    """The transform to sRGB the image's embedded profile asks for; None when it has no profile, an sRGB
    one, an unreadable one or one for another colour space (the pixels are then used as stored)."""
    profile = image.info.get("icc_profile")
    if image.mode == "P":
        mode = "RGBA" if "transparency" in image.info else "RGB"
    else:
        mode = "RGBA" if image.mode in ("PA", "LA") else image.mode
    if not profile or mode not in _MANAGED_MODES:
        return None
    try:
        return _transform_to_srgb(profile, mode)
    except (ImageCms.PyCMSError, OSError, ValueError):
        return None


@functools.lru_cache(maxsize=16)
def _transform_to_srgb(profile: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    """The transform from `profile` to sRGB, or None when it changes no pixel by more than a level.

    Most web images carry an sRGB profile: recognised here by what it does, not by its name, they
    skip a transform that costs about 0.18 s on a 12-megapixel photo. Cached: phones and shops repeat
    the same few profiles.
    """
    # Relative colorimetric: colours inside sRGB keep their measured values (the swatches are
    # measurements), those outside are clipped to its edge.
    transform = ImageCms.buildTransform(ImageCms.ImageCmsProfile(io.BytesIO(profile)), _SRGB, mode,
                                        "RGBA" if mode == "RGBA" else "RGB",
                                        renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC)
    if mode not in ("RGB", "RGBA"):
        return transform
    probe = Image.fromarray(_PROBE_COLOURS).convert(mode)
    moved = np.abs(np.asarray(ImageCms.applyTransform(probe, transform).convert("RGB"), np.int16)
                   - _PROBE_COLOURS.astype(np.int16)).max()
    return None if moved <= 1 else transform


# 17 levels per channel, every combination: a grid of the colour cube (4,913 colours).
_PROBE_COLOURS = np.stack(np.meshgrid(*[np.linspace(0, 255, 17).round().astype(np.uint8)] * 3,
                                      indexing="ij"), -1).reshape(17, 289, 3)
