"""Loss and metric that skip missing labels (-1) and weight rare classes; keras.ops only."""
from __future__ import annotations

import keras
from keras import ops


def _flat_labels(y_true):
    return ops.reshape(ops.cast(y_true, "int32"), (-1,))


@keras.saving.register_keras_serializable("fashion_tagger")
class MaskedSparseCrossEntropy(keras.losses.Loss):
    """Sparse cross-entropy where label -1 contributes nothing, optionally weighted per class."""

    def __init__(self, class_weights=None, name="masked_sparse_ce", **kwargs):
        super().__init__(name=name, **kwargs)
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]

    def call(self, y_true, y_pred):
        labels = _flat_labels(y_true)
        valid = ops.cast(labels >= 0, "float32")
        safe = ops.maximum(labels, 0)
        loss = keras.losses.sparse_categorical_crossentropy(safe, ops.cast(y_pred, "float32"))
        if self.class_weights is not None:
            valid = valid * ops.take(ops.convert_to_tensor(self.class_weights, "float32"), safe)
        return loss * valid

    def get_config(self):
        return {**super().get_config(), "class_weights": self.class_weights}


@keras.saving.register_keras_serializable("fashion_tagger")
class MaskedAccuracy(keras.metrics.Mean):
    """Top-1 accuracy over the rows whose label is known."""

    def __init__(self, name="accuracy", **kwargs):
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels = _flat_labels(y_true)
        correct = ops.cast(ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), labels), "float32")
        return super().update_state(correct, sample_weight=ops.cast(labels >= 0, "float32"))
