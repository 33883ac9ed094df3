"""Process-wide setup that must happen before Keras picks its backend.

torch must be imported before TensorFlow: the reverse order loads two LLVM copies and crashes the
process. TensorFlow, when it is the backend, must not reserve the whole GPU, so that the torch
detector fits beside it.
"""
from __future__ import annotations

import contextlib
import os

# Idle OpenMP threads sleep instead of spinning. With a second busy process on a small CPU (two
# training runs, or two gunicorn workers), spinning threads slowed Lite0 training steps five- to
# ten-fold (measured: 4-13 vs 40 images/s). It must be set before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: F401  (import order matters, see above)
import torchvision  # noqa: F401  (it loads triton/LLVM via torch._dynamo: also before TensorFlow)

# torch serves the classifier 2-3x faster at the batch sizes a request makes (1-16 crops) and with
# less memory than TensorFlow: bench/classifier_backends.py. KERAS_BACKEND=tensorflow still works.
os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")

import keras  # noqa: E402


def _cap_tensorflow_gpu_memory() -> None:
    """TF_GPU_MEMORY_LIMIT_MB puts a hard ceiling on TensorFlow's share of each GPU (on top of
    allow-growth), so the torch detector keeps the rest of the card whatever the classifier's peak."""
    limit = os.environ.get("TF_GPU_MEMORY_LIMIT_MB")
    if keras.backend.backend() != "tensorflow" or not limit:
        return
    import tensorflow as tf  # backend configuration only; model code stays backend-agnostic

    for gpu in tf.config.list_physical_devices("GPU"):
        tf.config.set_logical_device_configuration(gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=int(limit))])


_cap_tensorflow_gpu_memory()


def backend() -> str:
    return keras.backend.backend()


def gpu_available() -> bool:
    if backend() == "torch":
        return torch.cuda.is_available()
    if backend() == "tensorflow":
        import tensorflow as tf  # backend configuration only; model code stays backend-agnostic

        return bool(tf.config.list_physical_devices("GPU"))
    return False


def gpu_name() -> str | None:
    """The first GPU's name (for manifests), None without one."""
    if not gpu_available():
        return None
    if backend() == "torch":
        return torch.cuda.get_device_name(0)
    import tensorflow as tf  # backend configuration only

    gpu = tf.config.list_physical_devices("GPU")[0]
    return tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)


def no_grad():
    """Context for inference calls: under torch, calling a Keras model directly records the autograd
    graph and keeps every activation until the outputs are freed (measured: +2.9 GB peak RSS for 64
    Lite0 crops at 128x96); torch.no_grad() stops that. Other backends record nothing outside a tape."""
    if backend() == "torch":
        return torch.no_grad()
    return contextlib.nullcontext()
