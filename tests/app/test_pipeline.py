"""The pipeline around the models: which detections become garment items."""
import numpy as np

from app.pipeline import Pipeline
from detection.inference import Detection


def test_garments_too_small_to_classify_are_not_reported(pipeline, monkeypatch):
    image = np.full((80, 60, 3), 200, dtype=np.uint8)
    mask = np.zeros((80, 60), dtype=bool)
    found = [Detection((5.0, 5.0, 45.0, 60.0), mask, "top", 0.9),      # 40 x 55: kept
             Detection((10.0, 64.0, 18.0, 74.0), mask, "footwear", 0.8),  # 8 x 10: dropped
             Detection((20.0, 10.0, 36.0, 26.0), mask, "hat", 0.7)]      # 16 x 16: kept (at the limit)
    strict = Pipeline(pipeline.detector, pipeline.classifier, garment_min_side=16)
    monkeypatch.setattr(strict.detector, "detect", lambda images: [list(found) for _ in images])
    items = strict.analyse(image, {})
    assert [i["kind"] for i in items] == ["product", "garment", "garment"]
    assert [i["detector"]["label"] for i in items[1:]] == ["top", "hat"]
    everything = Pipeline(pipeline.detector, pipeline.classifier, garment_min_side=0).analyse(image, {})
    assert [i["detector"]["label"] for i in everything[1:]] == ["top", "footwear", "hat"]
