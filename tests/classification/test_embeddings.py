"""Classifier embeddings: one forward pass gives the same tags as `predict` and unit-length trunk
features that put similar images closer than different ones."""
from pathlib import Path

import numpy as np
import pytest

from classification.inference import Classifier

BUNDLE = Path(__file__).resolve().parents[2] / "models" / "fashion-lite0"


@pytest.fixture(scope="module")
def classifier():
    return Classifier(BUNDLE)


def _garment(colour, size=(120, 90), stripe=False):
    image = np.full((*size, 3), 250, np.uint8)
    image[20:100, 15:75] = colour
    if stripe:
        image[50:60, 15:75] = 20
    return image


def test_embeddings_come_with_the_same_tags_as_predict(classifier):
    images = [_garment((200, 30, 40)), _garment((30, 40, 160)), np.full((40, 300, 3), 90, np.uint8)]
    tags, embeddings = classifier.predict_with_embeddings(images)
    assert tags == classifier.predict(images)  # existing behaviour, unchanged and from the same pass
    assert embeddings.shape == (3, classifier.embedding_dim) and embeddings.dtype == np.float32
    assert classifier.features_dim == 1280  # Lite0's pooled features; the bundle's head may project them
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(classifier.embed(images[:1]), embeddings[:1], atol=1e-5)
    assert classifier.embedding_version.startswith(f"{classifier.manifest['name']}:{classifier.manifest['version']}")


def test_similar_images_are_closer_than_different_ones(classifier):
    red, red_striped, blue_photo = classifier.embed(
        [_garment((200, 30, 40)), _garment((190, 35, 45), stripe=True), np.full((120, 90, 3), (20, 80, 30), np.uint8)])
    assert float(red @ red_striped) > float(red @ blue_photo)


def test_no_images(classifier):
    tags, embeddings = classifier.predict_with_embeddings([])
    assert tags == [] and embeddings.shape == (0, classifier.embedding_dim)
