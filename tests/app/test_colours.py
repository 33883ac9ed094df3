import numpy as np

from app.colours import backdrop_mask, dominant_colours, whole_image_colours


def test_colours_come_from_the_mask_pixels():
    image = np.zeros((40, 40, 3), dtype=np.uint8)
    image[:, :20] = (200, 30, 40)
    image[:, 20:] = (40, 80, 200)
    mask = np.zeros((40, 40), dtype=bool)
    mask[:, 25:] = True
    colours = dominant_colours(image, mask)
    assert [c["name"] for c in colours] == ["blue"] and colours[0]["share"] == 1.0
    assert colours[0]["hex"] == "#2850c8"
    shares = {c["name"]: c["share"] for c in dominant_colours(image)}
    assert shares == {"red": 0.5, "blue": 0.5}


def product_shot(background=(250, 250, 250), garment=(200, 30, 40), size=(120, 90)) -> np.ndarray:
    """A garment filling a third of a plain backdrop, with JPEG-like noise on the backdrop."""
    rng = np.random.default_rng(0)
    image = np.empty((*size, 3), dtype=np.uint8)
    image[:] = background
    image = np.clip(image.astype(int) + rng.integers(-3, 4, image.shape), 0, 255).astype(np.uint8)
    image[30:90, 25:65] = garment
    return image


def test_the_whole_image_colours_leave_the_backdrop_out():
    shot = product_shot()
    assert [c["name"] for c in dominant_colours(shot)] == ["white", "red"]  # the studio's white first
    backdrop = backdrop_mask(shot)
    assert backdrop is not None and not backdrop[30:90, 25:65].any() and backdrop[:30].all()
    colours = whole_image_colours(shot)
    assert [c["name"] for c in colours] == ["red"] and colours[0]["share"] == 1.0
    # a backdrop of any plain colour, not only white
    assert [c["name"] for c in whole_image_colours(product_shot(background=(40, 140, 60)))] == ["red"]


def test_a_garment_that_fills_the_frame_or_matches_its_backdrop_keeps_every_pixel():
    full = np.full((60, 40, 3), (40, 80, 200), dtype=np.uint8)
    assert backdrop_mask(full) is None and [c["name"] for c in whole_image_colours(full)] == ["blue"]
    white_on_white = product_shot(garment=(248, 248, 248))
    assert backdrop_mask(white_on_white) is None  # all backdrop: nothing to leave out
    assert [c["name"] for c in whole_image_colours(white_on_white)] == ["white"]
    # a colour inside the garment like the backdrop's, but not joined to the border, stays the garment's
    framed = product_shot()
    framed[45:65, 35:55] = (250, 250, 250)
    assert "white" in [c["name"] for c in whole_image_colours(framed)]


def test_a_large_photo_is_read_on_a_small_copy():
    big = np.kron(product_shot(), np.ones((20, 20, 1), dtype=np.uint8))  # 2400 x 1800
    assert [c["name"] for c in whole_image_colours(big)] == ["red"]
