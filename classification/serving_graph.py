"""The classifier's network rewritten for serving on the torch backend: the same function, less work.

Keras keeps images channels-last; torch's convolutions are channels-first, so on the torch backend every
convolution transposes its input and output (the copies show in torch's profiler beside each
convolution), and each batch normalisation is three more element-wise passes. The serving copy
computes channels-first from its first layer (one transpose after the rescaling) and folds every batch
normalisation into the convolution before it (a bias), leaving the trained bundle as it is. Used under
the torch backend, where it was measured (classification.inference.Classifier).

Then the copy is exported (`ExportedNetwork`, torch.export): one graph of torch operations, the batch size
left free. Keras calls each layer through Python (argument checks, name scopes, padding worked out per
call), which at a request's few images is a quarter to a half of the call (bench/classifier_serving.py);
the exported graph runs the same operations without it.
"""
from __future__ import annotations

import warnings

import torch  # before keras: with the TensorFlow backend, torch must load first

import keras
import numpy as np

_CONVOLUTIONS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)


def for_serving(model: keras.Model) -> keras.Model:
    """A channels-first copy of `model` with its batch normalisations folded: the same outputs (to float
    rounding) for the same channels-last input."""
    folded = _folded_pairs(model)  # batch normalisation name -> the convolution it follows
    folded_into = {convolution: batch_norm for batch_norm, convolution in folded.items()}
    entry = _entry_layer(model)

    def clone(layer):
        if isinstance(layer, _CONVOLUTIONS):
            return _convolution(layer, use_bias=layer.use_bias or layer.name in folded_into)
        if isinstance(layer, keras.layers.BatchNormalization):
            if layer.name in folded:
                return _Folded(name=layer.name)
            return keras.layers.BatchNormalization(axis=1, momentum=layer.momentum, epsilon=layer.epsilon,
                                                   center=layer.center, scale=layer.scale, name=layer.name)
        if layer.name == entry:  # the input's rescaling, channels-last as the input: transpose after it
            return keras.Sequential([_copy(layer), keras.layers.Permute((3, 1, 2))], name=layer.name)
        if isinstance(layer, keras.layers.Rescaling) and np.ndim(layer.scale) + np.ndim(layer.offset):
            raise ValueError(f"no channels-first serving copy: {layer.name} rescales per channel")
        return _copy(layer)

    served = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        if not layer.weights or layer.name in folded:
            continue
        batch_norm = folded_into.get(layer.name)
        served.get_layer(layer.name).set_weights(
            _folded_weights(layer, model.get_layer(batch_norm)) if batch_norm else layer.get_weights())
    return served


def _convolution(layer, use_bias: bool):
    """The convolution computing channels-first."""
    common = dict(kernel_size=layer.kernel_size, strides=layer.strides, padding=layer.padding,
                  data_format="channels_first", dilation_rate=layer.dilation_rate, activation=layer.activation,
                  use_bias=use_bias, name=layer.name)
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return keras.layers.DepthwiseConv2D(depth_multiplier=layer.depth_multiplier, **common)
    return keras.layers.Conv2D(layer.filters, groups=layer.groups, **common)


def _copy(layer):
    """A new layer like `layer`, channels-first where it has a layout. Built from its attributes, not
    get_config(): Keras' serialisation imports TensorFlow to check a type, which a torch worker otherwise
    never loads."""
    name = layer.name
    if isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)):
        return type(layer)(pool_size=layer.pool_size, strides=layer.strides, padding=layer.padding,
                           data_format="channels_first", name=name)
    if isinstance(layer, (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D)):
        return type(layer)(data_format="channels_first", keepdims=layer.keepdims, name=name)
    if isinstance(layer, keras.layers.Rescaling):
        return keras.layers.Rescaling(layer.scale, layer.offset, name=name)
    if isinstance(layer, keras.layers.ReLU):
        return keras.layers.ReLU(max_value=layer.max_value, negative_slope=layer.negative_slope,
                                 threshold=layer.threshold, name=name)
    if isinstance(layer, keras.layers.Activation):
        return keras.layers.Activation(layer.activation, name=name)
    if isinstance(layer, (keras.layers.Add, keras.layers.Multiply)):
        return type(layer)(name=name)
    if isinstance(layer, keras.layers.Dropout):
        return keras.layers.Dropout(layer.rate, noise_shape=layer.noise_shape, seed=layer.seed, name=name)
    if isinstance(layer, keras.layers.Dense):
        return keras.layers.Dense(layer.units, activation=layer.activation, use_bias=layer.use_bias, name=name)
    raise ValueError(f"no channels-first serving copy for a network with {type(layer).__name__} "
                     f"({name}): serve it as it is")


class _Folded(keras.layers.Layer):
    """Where a folded batch normalisation was: passes its input on (its scale and shift are in the
    convolution before it); takes the batch normalisation's call arguments."""

    def call(self, inputs, training=None, mask=None):
        return inputs


def _entry_layer(model: keras.Model) -> str:
    """The one layer reading the model's input, a Rescaling (element-wise, so either layout would do)."""
    readers = [layer for layer in model.layers for node in layer._inbound_nodes for tensor in node.input_tensors
               if tensor._keras_history.operation is model.layers[0]]
    if len(readers) != 1 or not isinstance(readers[0], keras.layers.Rescaling):
        raise ValueError("no channels-first serving copy: the input is not read by one Rescaling layer")
    return readers[0].name


def _folded_pairs(model: keras.Model) -> dict[str, str]:
    """Batch normalisations whose input is a convolution's output used by nothing else (name -> conv)."""
    users: dict[str, int] = {}
    for layer in model.layers:
        for node in layer._inbound_nodes:
            for tensor in node.input_tensors:
                producer = tensor._keras_history.operation.name
                users[producer] = users.get(producer, 0) + 1
    pairs = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization) and layer.axis in (-1, [-1], 3, [3]):
            producer = layer.input._keras_history.operation
            if isinstance(producer, _CONVOLUTIONS) and users.get(producer.name) == 1:
                pairs[layer.name] = producer.name
    return pairs


def _folded_weights(convolution, batch_norm) -> list[np.ndarray]:
    """The convolution's kernel and bias with the batch normalisation after it folded in."""
    weights = {w.path.rsplit("/", 1)[-1]: np.asarray(keras.ops.convert_to_numpy(w), np.float64)
               for w in batch_norm.weights}
    gamma = weights.get("gamma", 1.0)
    beta = weights.get("beta", 0.0)
    scale = gamma / np.sqrt(weights["moving_variance"] + batch_norm.epsilon)
    kernel, *rest = (np.asarray(w, np.float64) for w in convolution.get_weights())
    bias = rest[0] if rest else np.zeros(len(scale))
    if isinstance(convolution, keras.layers.DepthwiseConv2D):  # (kh, kw, in, multiplier): out = in x multiplier
        kernel = kernel * scale.reshape(kernel.shape[2], kernel.shape[3])
    else:  # (kh, kw, in, out)
        kernel = kernel * scale
    bias = (bias - weights["moving_mean"]) * scale + beta
    return [kernel.astype(np.float32), bias.astype(np.float32)]


class ExportedNetwork:
    """`model` (torch backend, on the CPU) exported once by torch.export for channels-last uint8 batches of
    `height` x `width` and any size, called like the model: the same outputs (the same operations), by name."""

    MAX_BATCH = 4096  # a bound torch.export asks for; callers send at most their batch size

    def __init__(self, model: keras.Model, height: int, width: int):
        self.names = tuple(sorted(model.output))
        example = torch.zeros((2, height, width, 3), dtype=torch.uint8)
        batch = torch.export.Dim("batch", min=1, max=self.MAX_BATCH)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras' shape arithmetic, fixed for a fixed input size
            program = torch.export.export(_NamedOutputs(model, self.names), (example,), dynamic_shapes=({0: batch},))
        self.module = program.module()

    def __call__(self, batch: np.ndarray, training: bool = False) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            outputs = self.module(torch.from_numpy(np.ascontiguousarray(batch)))
        return dict(zip(self.names, outputs))


class _NamedOutputs(torch.nn.Module):
    """The model's dict of outputs as a tuple in `names`' order (what torch.export traces)."""

    def __init__(self, model: keras.Model, names: tuple[str, ...]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.model(batch, training=False)
        return tuple(outputs[name] for name in self.names)
