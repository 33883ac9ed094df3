"""Serving speed-ups: folding frozen batch norm into convolutions changes nothing the detector outputs;
bfloat16 arithmetic (opt-in) finds the same garments."""
import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from timm.layers.norm_act import BatchNormAct2d, FrozenBatchNormAct2d
from torch import nn
from torchvision.ops import box_iou
from torchvision.ops.misc import FrozenBatchNorm2d

from common.images import load_rgb
from detection.bundle import load_bundle
from detection.folding import fold_batch_norms
from detection.inference import Detector, resolve_compute_dtype
from detection.model import DetectorConfig, build_detector

ROOT = Path(__file__).resolve().parents[2]
SERVED = ROOT / "models" / "ccp-maskrcnn-efflite0"
PHOTOS = ROOT.parent / "shared" / "datasets" / "clothing-co-parsing" / "photos"
NORMS = (FrozenBatchNorm2d, FrozenBatchNormAct2d, BatchNormAct2d, nn.BatchNorm2d)


def norms_in(module: nn.Module) -> int:
    return sum(isinstance(m, NORMS) for m in module.modules())


def image(seed: int = 0, size=(96, 128)) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(3, *size, generator=generator)


@pytest.mark.parametrize("architecture", ["maskrcnn_efficientnet_lite0_fpn", "maskrcnn_mobilenet_v3_fpn"])
def test_every_backbone_batch_norm_folds_and_the_features_stay_the_same(architecture):
    model = build_detector(DetectorConfig(architecture=architecture, num_classes=3, min_size=96, max_size=128),
                           pretrained=architecture == "maskrcnn_efficientnet_lite0_fpn").eval()
    # Statistics far from the identity (a randomly initialised norm has mean 0, variance 1), so that a
    # fold with the wrong formula would show.
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, NORMS):
            module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)
    folded = copy.deepcopy(model)
    before = norms_in(model.backbone.body)
    assert before > 10
    assert fold_batch_norms(folded) >= before
    assert norms_in(folded.backbone.body) == 0

    pixels = model.transform([image()])[0].tensors
    with torch.no_grad():
        expected, ours = model.backbone(pixels), folded.backbone(pixels)
    assert list(expected) == list(ours)
    # float32 rounding, relative to the maps' own scale: through ~50 folded layers with these statistics it
    # reaches ~1.2e-4 of the scale on a busy machine (kernels pick other summation orders); a fold with a
    # wrong formula is off by a good fraction of the scale.
    for name in expected:
        scale = expected[name].abs().max().item()
        torch.testing.assert_close(ours[name], expected[name], rtol=1e-3, atol=1e-3 * scale)


def test_a_norm_that_does_not_follow_a_convolution_is_left_alone():
    model = nn.Sequential(nn.ReLU(), nn.BatchNorm2d(4), nn.Conv2d(4, 8, 3), nn.BatchNorm2d(8)).eval()
    assert fold_batch_norms(model) == 1
    assert isinstance(model[1], nn.BatchNorm2d) and isinstance(model[3], nn.Identity)


def test_a_training_mode_norm_is_not_folded():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
    assert fold_batch_norms(model) == 0


def test_the_served_detector_finds_what_the_unfolded_bundle_finds_on_a_street_photo():
    photos = sorted(PHOTOS.glob("*.jpg"))[:1]
    if not photos:
        pytest.skip(f"no street photo under {PHOTOS}")
    pixels = load_rgb(photos[0])
    reference, _ = load_bundle(SERVED)
    detector = Detector(SERVED, device="cpu")
    assert detector.folded_batch_norms > 40
    with torch.no_grad():
        expected = reference([torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 255.0])[0]
    found = detector.detect_per_class([pixels])[0]
    assert len(found) == len(expected["boxes"]) > 0
    assert [d.label for d in found] == [detector.classes[i - 1] for i in expected["labels"].tolist()]
    np.testing.assert_allclose([d.box for d in found], expected["boxes"].numpy(), atol=0.05)
    np.testing.assert_allclose([d.score for d in found], expected["scores"].numpy(), atol=1e-4)


def test_bfloat16_finds_the_confident_garments_float32_finds():
    photos = sorted(PHOTOS.glob("*.jpg"))[:1]
    if not photos:
        pytest.skip(f"no street photo under {PHOTOS}")
    pixels = load_rgb(photos[0])
    exact = Detector(SERVED, device="cpu").detect([pixels])[0]
    fast = Detector(SERVED, device="cpu", compute_dtype="bfloat16").detect([pixels])[0]
    confident = [d for d in exact if d.score >= 0.7]
    assert confident and fast
    overlaps = box_iou(torch.tensor([d.box for d in confident]), torch.tensor([d.box for d in fast]))
    for row, garment in enumerate(confident):
        best = int(overlaps[row].argmax())
        assert overlaps[row, best] >= 0.8 and fast[best].label == garment.label


def test_auto_means_bfloat16_only_on_a_cpu_that_has_it(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert resolve_compute_dtype("auto", cpu) == "bfloat16"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    assert resolve_compute_dtype("auto", cpu) == "float32"
    assert resolve_compute_dtype("bfloat16", cpu) == "bfloat16"  # named, it is what runs (emulated: slower)
    # a GPU autocasts to float16 whatever is named; the CPU's choice does not apply there
    assert resolve_compute_dtype("auto", torch.device("cuda")) == "float32"
    assert resolve_compute_dtype("bfloat16", torch.device("cuda")) == "float32"


def test_bfloat16_detections_are_named_apart():
    exact = Detector(SERVED, device="cpu", compute_dtype="float32")
    fast = Detector(SERVED, device="cpu", compute_dtype="bfloat16")
    assert exact.version == f"{exact.manifest['name']}:{exact.manifest['version']}"
    assert fast.version == exact.version + "+bfloat16" and fast.compute_dtype == "bfloat16"


def test_an_unknown_compute_dtype_is_refused():
    with pytest.raises(ValueError, match="compute dtype"):
        Detector(SERVED, device="cpu", compute_dtype="float8")
