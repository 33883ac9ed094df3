"""Mask R-CNN builders, by name, from torchvision. Nothing is downloaded: weights=None everywhere.

- `maskrcnn_resnet50_fpn`: the accurate profile (ResNet-50 FPN, trainable batch norm from scratch).
- `maskrcnn_mobilenet_v3_fpn`: the fast CPU profile (MobileNetV3-Large FPN backbone, Mask R-CNN heads).
"""
from __future__ import annotations

import dataclasses

from torch import nn
from torchvision.models.detection import MaskRCNN, maskrcnn_resnet50_fpn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import mobilenet_backbone


@dataclasses.dataclass
class DetectorConfig:
    architecture: str = "maskrcnn_mobilenet_v3_fpn"
    num_classes: int = 14  # including background
    min_size: int = 512  # shorter image side after resizing
    max_size: int = 768
    score_threshold: float = 0.5
    nms_threshold: float = 0.5
    max_detections: int = 20

    def heads_kwargs(self) -> dict:
        return {"min_size": self.min_size, "max_size": self.max_size, "box_score_thresh": self.score_threshold,
                "box_nms_thresh": self.nms_threshold, "box_detections_per_img": self.max_detections}


def _resnet50(config: DetectorConfig) -> nn.Module:
    return maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=config.num_classes,
                                 **config.heads_kwargs())


def _mobilenet_v3(config: DetectorConfig) -> nn.Module:
    backbone = mobilenet_backbone(backbone_name="mobilenet_v3_large", weights=None, fpn=True, trainable_layers=6)
    # Same anchors as torchvision's fasterrcnn_mobilenet_v3_large_fpn: every size on each of its 3 maps.
    anchors = AnchorGenerator(sizes=((32, 64, 128, 256, 512),) * 3, aspect_ratios=((0.5, 1.0, 2.0),) * 3)
    return MaskRCNN(backbone, num_classes=config.num_classes, rpn_anchor_generator=anchors, **config.heads_kwargs())


ARCHITECTURES = {"maskrcnn_resnet50_fpn": _resnet50, "maskrcnn_mobilenet_v3_fpn": _mobilenet_v3}


def build_detector(config: DetectorConfig) -> nn.Module:
    try:
        builder = ARCHITECTURES[config.architecture]
    except KeyError:
        raise ValueError(f"unknown detector architecture {config.architecture!r}; choose from {sorted(ARCHITECTURES)}")
    return builder(config)
