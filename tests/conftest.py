"""Shared fixtures. torch is imported first: TensorFlow before torch crashes the process."""
import os

import torch  # noqa: F401
import torchvision  # noqa: F401

os.environ.setdefault("KERAS_BACKEND", "torch")  # the service default; make test also runs tensorflow
