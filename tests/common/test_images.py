import io

import numpy as np
import pytest
from PIL import Image, ImageCms

from common.images import load_rgb, to_rgb_array

from .icc import DISPLAY_P3_COLORANTS, SRGB_COLORANTS, display_p3_to_srgb, rgb_profile


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "P", "I;16"])
def test_any_image_mode_loads_as_rgb(tmp_path, mode):
    path = tmp_path / ("x.tiff" if mode in ("CMYK", "I;16") else "x.png")
    base = Image.new("RGB", (20, 10), (200, 40, 40))
    image = base.convert(mode) if mode != "I;16" else Image.fromarray(np.full((10, 20), 40000, np.uint16))
    image.save(path)
    array = load_rgb(path)
    assert array.shape == (10, 20, 3) and array.dtype == np.uint8


# ---- colour profiles: pixels are read in sRGB, whatever space the file was saved in ----------------------

def _saved(image: Image.Image, fmt: str, **options) -> Image.Image:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return Image.open(io.BytesIO(out.getvalue()))


def test_a_display_p3_photo_reads_as_a_colour_managed_viewer_shows_it():
    pixels = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    tagged = _saved(Image.fromarray(pixels), "PNG", icc_profile=rgb_profile(DISPLAY_P3_COLORANTS, "Display P3"))
    decoded = to_rgb_array(tagged).astype(np.float64)
    expected = display_p3_to_srgb(pixels.astype(np.float64))
    assert np.abs(decoded - expected).max() <= 1.5  # lcms against the matrices, computed here
    assert np.abs(decoded - pixels).mean() > 5  # what reading the numbers as sRGB would have given


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF", "AVIF", "HEIF"])
def test_every_format_carries_its_profile(fmt):
    # A profile whose red and blue primaries are swapped: stored red is displayed blue.
    swapped = rgb_profile(SRGB_COLORANTS[:, ::-1], "red and blue swapped")
    image = _saved(Image.new("RGB", (16, 16), (230, 20, 10)), fmt, icc_profile=swapped, quality=95)
    red, green, blue = to_rgb_array(image)[8, 8].astype(int)
    assert blue > 200 and red < 40, (red, green, blue)


def test_exif_rotation_and_the_profile_both_apply():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    swapped = rgb_profile(SRGB_COLORANTS[:, ::-1], "red and blue swapped")
    image = _saved(Image.new("RGB", (40, 20), (230, 20, 10)), "JPEG", exif=exif, icc_profile=swapped, quality=95)
    array = to_rgb_array(image)
    assert array.shape == (40, 20, 3) and array[20, 10, 2] > 200


def test_an_srgb_profile_leaves_the_pixels_exactly_as_stored():
    pixels = np.random.default_rng(1).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    for profile in (rgb_profile(SRGB_COLORANTS, "sRGB"), ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()):
        assert np.array_equal(to_rgb_array(_saved(Image.fromarray(pixels), "PNG", icc_profile=profile)), pixels)


def test_transparent_pixels_are_converted_then_flattened_onto_white():
    swapped = rgb_profile(SRGB_COLORANTS[:, ::-1], "red and blue swapped")
    rgba = Image.new("RGBA", (8, 8), (230, 20, 10, 255))
    rgba.putpixel((0, 0), (230, 20, 10, 0))
    array = to_rgb_array(_saved(rgba, "PNG", icc_profile=swapped))
    assert array[0, 0].tolist() == [255, 255, 255] and array[4, 4, 2] > 200


@pytest.mark.parametrize("profile", [b"not a profile", b"\x00" * 200])
def test_a_broken_profile_is_ignored_not_an_error(profile):
    pixels = np.random.default_rng(2).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    image.info["icc_profile"] = profile
    assert np.array_equal(to_rgb_array(image), pixels)


def test_a_profile_for_another_colour_space_is_ignored():
    # An RGB profile on a grayscale image: no transform fits, the grey levels stay.
    grey = _saved(Image.new("L", (8, 8), 90), "PNG", icc_profile=rgb_profile(DISPLAY_P3_COLORANTS, "Display P3"))
    assert to_rgb_array(grey)[0, 0].tolist() == [90, 90, 90]
