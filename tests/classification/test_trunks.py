"""The Keras EfficientNet-Lite port against timm's implementation with the same ImageNet weights."""
import numpy as np
import pytest
from PIL import Image

from classification.trunks import get_trunk, imagenet_classifier
from common import pretrained
from common.images import load_rgb


@pytest.fixture(scope="module")
def real_photos(shared_datasets):
    """Eight real photos of garments at 224x168 (the phone photos and catalogue thumbnails)."""
    paths = sorted((shared_datasets / "clothing-dataset" / "images").glob("*.jpg"))[:4]
    paths += sorted((shared_datasets / "fashion-product-images-small" / "images").glob("*.jpg"))[:4]
    return np.stack([np.asarray(Image.fromarray(load_rgb(p)).resize((168, 224), Image.BILINEAR)) for p in paths])


@pytest.mark.parametrize("variant", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_keras_lite_gives_timms_imagenet_logits(real_photos, variant):
    import keras
    import torch
    timm = pytest.importorskip("timm")

    reference = timm.create_model(f"tf_{variant}").eval()
    state = {k: torch.from_numpy(v.copy()) for k, v in pretrained.load_efficientnet_lite(variant).items()}
    reference.load_state_dict(state, strict=False)
    scaled = (real_photos.astype(np.float32) - pretrained.INPUT_MEAN) / pretrained.INPUT_STD
    with torch.no_grad():
        expected = reference(torch.from_numpy(scaled.transpose(0, 3, 1, 2).copy())).numpy()
    ported = keras.ops.convert_to_numpy(imagenet_classifier(variant, (224, 168))(
        real_photos.astype(np.float32), training=False))
    # Logits reach about 10; float32 reordering differences stay far below 1e-3.
    np.testing.assert_allclose(ported, expected, atol=1e-3)
    assert (ported.argmax(1) == expected.argmax(1)).all()


def test_pretrained_trunk_starts_from_imagenet_and_freezes_the_early_stages():
    from classification.model import build_model
    from classification.taxonomy import Taxonomy

    taxonomy = Taxonomy(labels={t: ("a", "b") for t in ("gender", "masterCategory", "subCategory", "articleType",
                                                        "baseColour", "season", "usage")}, paths=(("a", "a", "a"),))
    model = build_model(taxonomy, (64, 48), trunk="efficientnet_lite0", frozen_stages=2, imagenet_init=True)
    stem = pretrained.load_efficientnet_lite("efficientnet_lite0")["conv_stem.weight"]
    np.testing.assert_array_equal(model.get_layer("conv_stem").get_weights()[0], stem.transpose(2, 3, 1, 0))
    assert not model.get_layer("conv_stem").trainable and not model.get_layer("blocks_1_1_conv_dw").trainable
    assert model.get_layer("blocks_2_0_conv_pw").trainable and model.get_layer("conv_head").trainable
    with pytest.raises(ValueError, match="no pretrained weights"):
        build_model(taxonomy, (64, 48), trunk="vgg19", imagenet_init=True)
    with pytest.raises(KeyError, match="unknown trunk"):
        get_trunk("resnet9000")
