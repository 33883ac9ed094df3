"""Garment classification: category (gender, masterCategory, subCategory, articleType) and style
(baseColour, season, usage) models on a shared VGG19 trunk, written in backend-agnostic Keras 3."""
from . import runtime as _runtime  # noqa: F401  (torch before TensorFlow; TF GPU memory growth)
