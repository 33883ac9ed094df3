"""VGG19 trunk with category and style heads, in backend-agnostic Keras 3.

VGG19's layout (16 3x3 convolutions in five blocks, each closed by 2x2 max pooling) with batch
normalisation after every convolution: without pretrained weights, plain VGG19 trains poorly from
scratch, and BN makes it converge. `width` scales every block's channels (1.0 = the published VGG19);
a narrower trunk is what makes training practical on a CPU.
"""
from __future__ import annotations

import keras
from keras import layers

from .taxonomy import MODEL_GROUPS, Taxonomy

VGG19_BLOCKS = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))


def build_model(taxonomy: Taxonomy, input_size: tuple[int, int] = (80, 60), width: float = 1.0,
                head_units: int = 512, dropout: float = 0.3) -> keras.Model:
    height, width_px = input_size
    inputs = keras.Input((height, width_px, 3), name="image")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(inputs)
    for block, (channels, repeats) in enumerate(VGG19_BLOCKS, start=1):
        filters = max(8, int(round(channels * width)))
        for conv in range(1, repeats + 1):
            name = f"block{block}_conv{conv}"
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=name)(x)
            x = layers.BatchNormalization(name=f"{name}_bn")(x)
            x = layers.ReLU(name=f"{name}_relu")(x)
        x = layers.MaxPooling2D(2, padding="same", name=f"block{block}_pool")(x)
    features = layers.GlobalAveragePooling2D(name="gap")(x)
    features = layers.Dropout(dropout, name="trunk_dropout")(features)

    outputs = {}
    for group, tasks in MODEL_GROUPS.items():
        hidden = layers.Dense(head_units, activation="relu", name=f"{group}_fc")(features)
        hidden = layers.Dropout(dropout, name=f"{group}_dropout")(hidden)
        for task in tasks:
            # float32 heads keep softmax stable under mixed precision.
            outputs[task] = layers.Dense(taxonomy.num_classes(task), activation="softmax",
                                         dtype="float32", name=task)(hidden)
    return keras.Model(inputs, outputs, name="fashion_vgg19")
