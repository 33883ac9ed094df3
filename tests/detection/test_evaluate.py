import json
import shutil

import pytest

from detection import evaluate
from detection.inference import Detector


def test_evaluate_cli_at_a_smaller_input_size_reports_accuracy_and_speed(trained_detector, tmp_path):
    metrics = evaluate.main(["--bundle", str(trained_detector / "bundle"), "--dataset", "deepfashion2",
                             "--data", str(trained_detector / "df2"), "--split", "val", "--min-size", "96",
                             "--proposals", "40", "--out", str(tmp_path / "eval")])
    # The longer-side limit follows the shorter side (bundle: 128/160), so the override really applies.
    assert metrics["input_size"] == {"min_size": 96, "max_size": 120}
    assert metrics["proposals"] == 40 and metrics["compute_dtype"] == "float32"
    assert metrics["images"] == 2 and metrics["detect_ms_median"] > 0
    assert 0 <= metrics["box_AP"] <= 1 and 0 <= metrics["mask_AP"] <= 1
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["input_size"]["min_size"] == 96
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "shorter side 96" in report and "| box_AP |" in report
    assert (tmp_path / "eval" / "predictions.png").stat().st_size > 0


def test_operating_points_count_matches_by_class_and_iou():
    ground_truth = {"images": [{"id": 1}, {"id": 2}],
                    "annotations": [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
                                    {"image_id": 1, "category_id": 2, "bbox": [20, 20, 10, 10]},
                                    {"image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10]}]}
    results = [
        {"image_id": 1, "category_id": 1, "score": 0.9, "bbox": [0, 0, 10, 10]},    # right
        {"image_id": 1, "category_id": 1, "score": 0.8, "bbox": [0, 0, 10, 10]},    # duplicate: wrong
        {"image_id": 1, "category_id": 1, "score": 0.7, "bbox": [20, 20, 10, 10]},  # wrong class there
        {"image_id": 2, "category_id": 1, "score": 0.3, "bbox": [1, 1, 10, 10]},    # right (IoU 0.68)
    ]
    points = {p["threshold"]: p for p in evaluate.operating_points(ground_truth, results)}
    assert points[0.85] == {"threshold": 0.85, "precision": 1.0, "recall": 0.3333, "f1": 0.5,
                            "detections_per_image": 0.5}
    assert points[0.25]["precision"] == 0.5 and points[0.25]["recall"] == 0.6667
    assert points[0.75]["precision"] == 0.5 and points[0.75]["recall"] == 0.3333
    assert points[0.9]["detections_per_image"] == 0.5 and max(points) == 0.9 and min(points) == 0.1


def test_update_manifest_records_metrics_and_the_serving_threshold(trained_detector, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(trained_detector / "bundle", bundle)
    before = json.loads((bundle / "manifest.json").read_text())
    metrics = evaluate.main(["--bundle", str(bundle), "--dataset", "deepfashion2", "--data", str(trained_detector / "df2"),
                             "--split", "val", "--update-manifest"])
    after = json.loads((bundle / "manifest.json").read_text())
    assert after["metrics"]["split"] == "val" and after["metrics"]["box_AP"] == metrics["box_AP"]
    assert after["model"]["score_threshold"] == metrics["best_f1_threshold"] == after["serving_threshold"]["value"]
    assert after["version"] == before["version"] and after["weights"] == before["weights"]
    assert Detector(bundle).model.roi_heads.score_thresh == metrics["best_f1_threshold"]
    # the manifest records the bundle as it stands, never an override's figures
    with pytest.raises(SystemExit):
        evaluate.main(["--bundle", str(bundle), "--dataset", "deepfashion2", "--data", str(trained_detector / "df2"),
                       "--split", "val", "--proposals", "40", "--update-manifest"])
