import numpy as np
import pytest
from PIL import Image

from common.images import load_rgb


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "P", "I;16"])
def test_any_image_mode_loads_as_rgb(tmp_path, mode):
    path = tmp_path / ("x.tiff" if mode in ("CMYK", "I;16") else "x.png")
    base = Image.new("RGB", (20, 10), (200, 40, 40))
    image = base.convert(mode) if mode != "I;16" else Image.fromarray(np.full((10, 20), 40000, np.uint16))
    image.save(path)
    array = load_rgb(path)
    assert array.shape == (10, 20, 3) and array.dtype == np.uint8
