"""A running average of the model's weights along its training trajectory (SWA / SWAD).

Fine-tuning at a constant learning rate wanders around a wide minimum; the mean of the weights it
visits sits nearer that minimum's centre than any single step, which generalises better to images
unlike the training ones (Izmailov et al. 2018, "Averaging Weights Leads to Wider Optima";
Cha et al. 2021, "SWAD: Domain Generalization by Seeking Flat Minima"). Every variable is averaged,
batch-norm statistics included (as SWAD does): with a small learning rate they move little, and the
averaged model then needs no extra pass over the data. It costs nothing at serving time.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

import keras


def weight_values(model: keras.Model) -> list[np.ndarray]:
    """Every variable of `model` (batch-norm statistics included) as float64, for summing."""
    return [np.asarray(keras.ops.convert_to_numpy(v.value), dtype=np.float64) for v in model.weights]


def assign_weight_values(model: keras.Model, values: list[np.ndarray]) -> None:
    """Load averaged values into `model`, each variable in its own dtype (integer counters rounded)."""
    for variable, value in zip(model.weights, values):
        dtype = keras.backend.standardize_dtype(variable.dtype)
        variable.assign((np.rint(value) if "int" in dtype else value).astype(dtype))


class WeightAverage(keras.callbacks.Callback):
    """Averages every variable of the model every `every` steps from epoch `start_epoch` (0-based).

    `apply()` puts the average into the model. `save`/`restore` keep it across a resumed run.
    """

    def __init__(self, start_epoch: int = 0, every: int = 10, path: Path | None = None):
        super().__init__()
        self.start_epoch, self.every, self.path = start_epoch, every, path
        self.sum: list[np.ndarray] | None = None
        self.count = 0
        self.epoch = 0
        self.steps = 0

    def restore(self) -> None:
        """Continue the sum a previous, interrupted run saved (nothing if there is none)."""
        if self.path is not None and self.path.is_file():
            with np.load(self.path) as saved:
                self.count = int(saved["count"])
                self.sum = [saved[f"w{i}"] for i in range(len(saved.files) - 1)]

    def save(self) -> None:
        if self.path is None or self.sum is None:
            return
        tmp = self.path.with_name(f"tmp-{self.path.name}")
        with open(tmp, "wb") as handle:
            np.savez(handle, count=self.count, **{f"w{i}": s for i, s in enumerate(self.sum)})
        tmp.replace(self.path)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch < self.start_epoch:
            return
        self.steps += 1
        if self.steps % self.every == 0:
            self.add(self.model)

    def on_epoch_end(self, epoch, logs=None):
        self.save()

    def add(self, model: keras.Model) -> None:
        values = weight_values(model)
        if self.sum is None:
            self.sum = values
        else:
            if len(values) != len(self.sum):
                raise ValueError("the model's variables changed while averaging")
            for total, value in zip(self.sum, values):
                total += value
        self.count += 1

    def average(self) -> list[np.ndarray]:
        if not self.count:
            raise ValueError("no weights averaged yet")
        return [total / self.count for total in self.sum]

    def apply(self, model: keras.Model) -> None:
        assign_weight_values(model, self.average())
