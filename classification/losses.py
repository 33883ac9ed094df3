"""Partial-label loss and accuracy; keras.ops only.

Targets are multi-hot: the set of labels an image allows (one label for a catalogue row, a set for
a phone photo labelled "Pants"). The loss is minus the log of the probability mass on the allowed
set, which is the usual cross-entropy when the set has one label and is zero exactly when all mass
sits inside the set. A row with an empty set (the source says nothing about the task) counts for
nothing.
"""
from __future__ import annotations

import keras
from keras import ops

_EPS = 1e-7


def allowed_mass(y_true, y_pred):
    return ops.sum(ops.cast(y_pred, "float32") * ops.cast(y_true, "float32"), axis=-1)


def known_rows(y_true):
    return ops.cast(ops.sum(ops.cast(y_true, "float32"), axis=-1) > 0, "float32")


@keras.saving.register_keras_serializable("fashion_tagger")
class PartialLabelCrossEntropy(keras.losses.Loss):
    def __init__(self, name="partial_label_ce", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        mass = ops.clip(allowed_mass(y_true, y_pred), _EPS, 1.0)
        return -ops.log(mass) * known_rows(y_true)


@keras.saving.register_keras_serializable("fashion_tagger")
class PartialLabelAccuracy(keras.metrics.Mean):
    """Share of the rows with a known label set whose top-1 class lies in that set."""

    def __init__(self, name="accuracy", **kwargs):
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        top = ops.one_hot(ops.argmax(y_pred, axis=-1), ops.shape(y_pred)[-1])
        correct = ops.cast(allowed_mass(y_true, top) > 0, "float32")
        return super().update_state(correct, sample_weight=known_rows(y_true))
