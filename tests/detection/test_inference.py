import json
import shutil

import numpy as np
import pytest

from common.images import load_rgb
from detection import train
from detection.bundle import BundleError, load_bundle
from detection.inference import Detector, crop_detection
from detection.model import DetectorConfig, build_detector
from detection.taxonomy import DEEPFASHION2

from .fixtures import write_deepfashion2


def test_two_iteration_training_saves_reloads_and_detects(trained_detector):
    bundle = trained_detector / "bundle"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["classes"] == list(DEEPFASHION2) and manifest["weights"]["dtype"] == "float16"
    assert {"box_AP", "box_AP50", "mask_AP"} <= set(manifest["metrics"])
    assert (bundle / "evaluation" / "predictions.png").is_file() and (bundle / "loss_curve.png").is_file()
    assert (trained_detector / "run" / "checkpoint.pt").is_file()
    detector = Detector(bundle, score_threshold=0.0)
    image = load_rgb(trained_detector / "df2" / "image" / "000001.jpg")
    results = detector.detect([image, image[:100, :90]])
    assert len(results) == 2
    for detections, source in zip(results, [image, image[:100, :90]]):
        for d in detections:
            assert d.label in DEEPFASHION2 and 0 <= d.score <= 1
            assert d.mask.shape == source.shape[:2]
            assert 0 <= d.box[0] <= d.box[2] <= source.shape[1]


def test_resume_continues_from_the_checkpoint(trained_detector, capsys):
    root = trained_detector
    train.main(["--dataset", "deepfashion2", "--data", str(root / "df2"), "--bundle", str(root / "bundle2"),
                "--run-dir", str(root / "run"), "--epochs", "2", "--max-iters", "1", "--min-size", "128",
                "--max-size", "160", "--workers", "0", "--val-fraction", "0.34", "--resume"])
    assert "resuming from epoch 1" in capsys.readouterr().out
    assert json.loads((root / "bundle2" / "manifest.json").read_text())["training"]["epochs"] == 2


def test_cpu_profile_options_train_from_a_cache_and_survive_the_bundle(tmp_path):
    data = write_deepfashion2(tmp_path / "df2", count=6)
    train.main(["--dataset", "deepfashion2", "--data", str(data), "--bundle", str(tmp_path / "bundle"),
                "--run-dir", str(tmp_path / "run"), "--epochs", "1", "--max-iters", "2", "--min-size", "64",
                "--max-size", "96", "--workers", "0", "--val-fraction", "0.34", "--cache",
                "--mask-head-channels", "32", "--mask-head-layers", "1", "--roi-samples", "16",
                "--rpn-train-proposals", "100", "50", "--rpn-test-proposals", "40", "20"])
    model, manifest = load_bundle(tmp_path / "bundle")
    assert manifest["model"]["mask_head_channels"] == 32 and manifest["model"]["rpn_test_post_nms"] == 20
    assert model.roi_heads.mask_predictor.conv5_mask.in_channels == 32
    assert len(model.roi_heads.mask_head) == 1
    assert model.rpn._post_nms_top_n["testing"] == 20 and model.roi_heads.fg_bg_sampler.batch_size_per_image == 16
    detections = Detector(tmp_path / "bundle", score_threshold=0.0).detect([load_rgb(data / "image" / "000001.jpg")])
    assert len(detections) == 1


def test_a_bundle_without_the_newer_config_fields_loads_with_torchvision_defaults(trained_detector, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(trained_detector / "bundle", old)
    manifest = json.loads((old / "manifest.json").read_text())
    for key in ("mask_head_channels", "mask_head_layers", "rpn_train_pre_nms", "rpn_train_post_nms",
                "rpn_test_pre_nms", "rpn_test_post_nms", "roi_samples_per_image"):
        del manifest["model"][key]
    (old / "manifest.json").write_text(json.dumps(manifest))
    model, _ = load_bundle(old)
    assert len(model.roi_heads.mask_head) == 4 and model.rpn._post_nms_top_n["testing"] == 1000


def test_class_count_mismatch_is_refused(trained_detector, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(trained_detector / "bundle", broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["classes"] = manifest["classes"][:-1]
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="14 outputs .* 12 classes"):
        load_bundle(broken)


def test_every_architecture_builds_without_downloading():
    for architecture in ("maskrcnn_mobilenet_v3_fpn", "maskrcnn_resnet50_fpn", "maskrcnn_efficientnet_lite0_fpn"):
        model = build_detector(DetectorConfig(architecture=architecture, num_classes=5, min_size=64, max_size=64))
        assert model.roi_heads.box_predictor.cls_score.out_features == 5
    with pytest.raises(ValueError, match="unknown detector architecture"):
        build_detector(DetectorConfig(architecture="yolo"))


@pytest.mark.parametrize("box, expected_shape", [
    ((10, 10, 30, 50), (48, 24)),        # 10% padding on each side
    ((-20, -5, 15, 12), (14, 19)),       # partly outside the image: clipped
    ((95, 75, 100, 80), (6, 6)),         # at the bottom-right border
    ((40, 40, 40, 40), (1, 1)),          # empty box: still a 1x1 crop
    ((99.6, 79.6, 99.9, 79.9), (1, 1)),  # sub-pixel box at the corner
])
def test_crop_helper_edge_cases(box, expected_shape):
    image = np.zeros((80, 100, 3), dtype=np.uint8)
    assert crop_detection(image, box).shape[:2] == expected_shape


def test_crop_paints_outside_the_mask_white():
    image = np.zeros((20, 20, 3), dtype=np.uint8)
    mask = np.zeros((20, 20), dtype=bool)
    mask[5:10, 5:10] = True
    crop = crop_detection(image, (5, 5, 10, 10), padding=0.4, mask=mask)
    assert crop.shape[:2] == (9, 9) and crop[0, 0].tolist() == [255, 255, 255] and crop[4, 4].tolist() == [0, 0, 0]
