"""WSGI entry point for gunicorn: `gunicorn -c gunicorn.conf.py wsgi:app`."""
import torch  # noqa: F401  (before TensorFlow: two LLVM copies crash the process)
import torchvision  # noqa: F401

from app import create_app

app = create_app()
