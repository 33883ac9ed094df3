import numpy as np

from app.colours import dominant_colours


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
