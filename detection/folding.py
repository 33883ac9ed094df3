"""Fold frozen batch norm into the convolution before it, for inference.

A frozen batch-norm layer is a per-channel affine map, so the convolution in front of it can absorb it:
w' = w * g / sqrt(v + eps), b' = (b - m) * g / sqrt(v + eps) + beta. The detector's backbone keeps
its ImageNet statistics frozen (backbones.py), so every one of its batch norms folds, and serving
skips one pass over every feature map per layer (measured in docs/detector.md, "Serving speed").
Only for inference: the folded layers no longer exist to be trained.
"""
from __future__ import annotations

import torch
from timm.layers.norm_act import BatchNormAct2d, FrozenBatchNormAct2d
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights
from torchvision.ops.misc import FrozenBatchNorm2d


def fold_batch_norms(model: nn.Module) -> int:
    """Fold, in place, every batch norm that directly follows a convolution among its siblings (the
    registration order of timm's and torchvision's blocks is their execution order); returns how many
    were folded. Call on a model in eval mode: a training-mode BatchNorm2d normalises by the batch."""
    folded = 0
    for parent in list(model.modules()):
        previous = None
        for name, child in list(parent.named_children()):
            if isinstance(previous, nn.Conv2d) and _is_foldable(child, previous):
                _fold_into(previous, child)
                setattr(parent, name, _what_remains(child))
                folded += 1
            previous = child
    return folded


def _is_foldable(norm: nn.Module, conv: nn.Conv2d) -> bool:
    kinds = (FrozenBatchNorm2d, FrozenBatchNormAct2d, BatchNormAct2d, nn.BatchNorm2d)
    if not isinstance(norm, kinds) or norm.running_mean is None:
        return False
    return not norm.training and norm.running_mean.numel() == conv.out_channels


@torch.no_grad()
def _fold_into(conv: nn.Conv2d, norm: nn.Module) -> None:
    weight = norm.weight if norm.weight is not None else torch.ones_like(norm.running_mean)
    bias = norm.bias if norm.bias is not None else torch.zeros_like(norm.running_mean)
    conv.weight, conv.bias = fuse_conv_bn_weights(conv.weight, conv.bias, norm.running_mean, norm.running_var,
                                                  norm.eps, weight, bias)
    conv.weight.requires_grad_(False)
    conv.bias.requires_grad_(False)


def _what_remains(norm: nn.Module) -> nn.Module:
    """timm's norm+act layers keep their dropout and activation; a plain batch norm leaves nothing."""
    if isinstance(norm, (FrozenBatchNormAct2d, BatchNormAct2d)):
        return nn.Sequential(norm.drop, norm.act)
    return nn.Identity()
