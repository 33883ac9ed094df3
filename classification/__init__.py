"""Garment classification: category (gender, masterCategory, subCategory, articleType) and style
(baseColour, season, usage) models on one shared trunk chosen by name (VGG19 from scratch, or
EfficientNet-Lite from ImageNet), written in backend-agnostic Keras 3."""
from . import runtime as _runtime  # noqa: F401  (torch before TensorFlow; TF GPU memory growth)
