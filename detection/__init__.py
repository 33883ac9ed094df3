"""Garment detection: torchvision Mask R-CNN, dataset readers (Clothing Co-Parsing, DeepFashion2), COCO export."""
import torch  # noqa: F401  (torch and torchvision before anything that may load TensorFlow)
import torchvision  # noqa: F401
