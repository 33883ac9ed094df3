import numpy as np
import pytest

from classification import runtime  # noqa: F401  (backend and import order)
import keras

from classification.weight_average import WeightAverage


def tiny_model():
    inputs = keras.Input((4,))
    x = keras.layers.Dense(3)(inputs)
    x = keras.layers.BatchNormalization()(x)
    return keras.Model(inputs, keras.layers.Dense(2)(x))


def set_all(model, value):
    for variable in model.weights:
        variable.assign(np.full(variable.shape, value, dtype="float32"))


def test_apply_puts_the_mean_of_the_samples_into_every_variable_batch_norm_statistics_included():
    model = tiny_model()
    averager = WeightAverage()
    for value in (1.0, 2.0, 6.0):
        set_all(model, value)
        averager.add(model)
    averager.apply(model)
    assert averager.count == 3
    moving = [v for v in model.weights if "moving" in v.path]
    assert moving, "batch-norm statistics are among the averaged variables"
    for variable in model.weights:
        np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), 3.0)


def test_the_sum_survives_a_restart(tmp_path):
    model = tiny_model()
    first = WeightAverage(path=tmp_path / "average.npz")
    set_all(model, 1.0)
    first.add(model)
    first.save()
    second = WeightAverage(path=tmp_path / "average.npz")
    second.restore()
    set_all(model, 3.0)
    second.add(model)
    second.apply(model)
    assert second.count == 2
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.weights[0]), 2.0)


def test_nothing_averaged_is_an_error():
    with pytest.raises(ValueError, match="no weights"):
        WeightAverage().apply(tiny_model())


def test_samples_are_taken_every_n_steps_from_the_start_epoch_only():
    model = tiny_model()
    averager = WeightAverage(start_epoch=1, every=2)
    averager.set_model(model)
    for epoch in range(3):
        averager.on_epoch_begin(epoch)
        for step in range(5):
            averager.on_train_batch_end(step)
    assert averager.count == 5  # epochs 2 and 3: 10 steps, every second one
