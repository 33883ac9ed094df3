"""Garment detection: torchvision Mask R-CNN, dataset readers (Clothing Co-Parsing, DeepFashion2), COCO export."""
import os

# Idle OpenMP threads sleep instead of spinning (as classification/runtime.py does). On 2 cores shared
# with another busy process, spinning made Lite0 detector training steps 3-15x slower (measured at
# 512 px, batch 2: 10-54 s per step spinning, 2.8-3.3 s sleeping). Set before torch loads OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402,F401  (torch and torchvision before anything that may load TensorFlow)
import torchvision  # noqa: E402,F401
