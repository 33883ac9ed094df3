"""Feature-pyramid backbones on ImageNet-pretrained timm networks, for torchvision's detection models.

timm's `features_only` networks return a list of feature maps; torchvision's `BackboneWithFPN` wants a
network whose named children it can cut (`IntermediateLayerGetter`), which timm's are not. So the FPN
part is composed here from the same torchvision pieces (`FeaturePyramidNetwork` + `LastLevelMaxPool`).

Fine-tuning practice for a small dataset (Detectron2's and torchvision's defaults): every batch-norm
layer keeps its ImageNet statistics and affine parameters (frozen: batches of 2 images estimate them
badly), and the stem and the first stage keep their ImageNet weights (low-level edges transfer as they
are, and freezing them saves their backward pass).
"""
from __future__ import annotations

from collections import OrderedDict

import timm
import torch
from timm.layers import freeze_batch_norm_2d
from torch import nn
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

from common.pretrained import INPUT_MEAN, INPUT_STD, load_efficientnet_lite

# Our name (common.pretrained's) -> timm's architecture with TensorFlow's SAME padding, which the
# released checkpoints were trained with.
TIMM_NAMES = {"efficientnet_lite0": "tf_efficientnet_lite0", "efficientnet_lite1": "tf_efficientnet_lite1",
              "efficientnet_lite2": "tf_efficientnet_lite2"}
# Strides 8, 16, 32 (timm feature indices 2, 3, 4) + a max-pooled stride-64 map: garments are rarely
# smaller than 32 px at serving size, and a stride-4 map would double the FPN's cost on a CPU.
OUT_INDICES = (2, 3, 4)
# What the checkpoints expect, for images in [0, 1] (torchvision's transform normalises after /255):
# (255 x - 127) / 128 = (x - 127/255) / (128/255).
IMAGE_MEAN = [INPUT_MEAN / 255.0] * 3
IMAGE_STD = [INPUT_STD / 255.0] * 3


def efficientnet_lite_features(name: str = "efficientnet_lite0", pretrained: bool = True) -> nn.Module:
    """timm's features_only EfficientNet-Lite (strides 8/16/32), with the ImageNet arrays from the
    installed wheel loaded when `pretrained` (never downloaded: timm's pretrained=False always)."""
    body = timm.create_model(TIMM_NAMES[name], pretrained=False, features_only=True, out_indices=OUT_INDICES)
    if pretrained:
        arrays = load_efficientnet_lite(name)
        state = body.state_dict()
        missing = sorted(k for k in state if k not in arrays and not k.endswith("num_batches_tracked"))
        if missing:
            raise ValueError(f"{name}: the checkpoint lacks {len(missing)} backbone tensors, e.g. {missing[:3]}")
        for key, value in state.items():
            if key in arrays:
                if tuple(value.shape) != arrays[key].shape:
                    raise ValueError(f"{name}: {key} is {tuple(value.shape)} in timm, {arrays[key].shape} in the checkpoint")
                value.copy_(torch.from_numpy(arrays[key].copy()))
    return body


def freeze_for_finetuning(body: nn.Module, frozen_stages: int = 1) -> nn.Module:
    """Batch norm -> frozen batch norm everywhere; the stem and the first `frozen_stages` stages
    stop learning. Returns the (converted) body."""
    body = freeze_batch_norm_2d(body)
    for module in (body.conv_stem, body.bn1, *body.blocks[:frozen_stages]):
        module.requires_grad_(False)
    return body


class TimmFPN(nn.Module):
    """timm feature maps -> FPN maps '0', '1', '2' (strides 8, 16, 32) and 'pool' (stride 64)."""

    def __init__(self, body: nn.Module, out_channels: int = 256):
        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(body.feature_info.channels(), out_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels  # what torchvision's heads read

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(self.body(x))))


def efficientnet_lite_fpn(name: str = "efficientnet_lite0", pretrained: bool = True, out_channels: int = 256,
                          frozen_stages: int = 1) -> TimmFPN:
    body = freeze_for_finetuning(efficientnet_lite_features(name, pretrained), frozen_stages)
    return TimmFPN(body, out_channels)
