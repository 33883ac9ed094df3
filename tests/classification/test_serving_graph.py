"""The serving copy of the classifier's network (torch backend): channels-first, batch normalisations
folded, and the same outputs as the network it was made from."""
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from classification.inference import Classifier
from classification.model import build_model
from classification.serving_graph import ExportedNetwork, for_serving
from classification.taxonomy import TASKS, Taxonomy
from common.images import load_rgb

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = ROOT.parent / "shared" / "datasets" / "fashion-product-images-small" / "images"
STREET = ROOT.parent / "shared" / "datasets" / "clothing-co-parsing" / "photos"
TAXONOMY = Taxonomy.from_records([
    {"gender": g, "masterCategory": m, "subCategory": s, "articleType": a, "baseColour": c, "season": e, "usage": u}
    for g, m, s, a, c, e, u in [("Men", "Apparel", "Topwear", "Tshirts", "Red", "Summer", "Casual"),
                                ("Women", "Footwear", "Shoes", "Flats", "Blue", "Winter", "Formal")]])

# The copy is made, exported and served on the torch backend only (Classifier does so there): TensorFlow's CPU
# Conv2D takes channels-first input only where oneDNN is on, and it is not on every CPU (off on an AMD EPYC here).
TORCH_ONLY = pytest.mark.skipif(keras.backend.backend() != "torch", reason="made and served on the torch backend")


def _outputs(model, batch):
    return {name: keras.ops.convert_to_numpy(value) for name, value in model(batch, training=False).items()}


@TORCH_ONLY
@pytest.mark.parametrize("trunk", ["vgg19", "efficientnet_lite0"])
def test_the_copy_computes_what_the_network_does(trunk):
    model = build_model(TAXONOMY, input_size=(64, 48), width=0.25, head_units=16, trunk=trunk)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # batch statistics other than the initial ones, so folding has work to do
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([gamma * rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.1, beta.shape),
                               rng.normal(0, 0.2, mean.shape), variance * rng.uniform(0.5, 2.0, variance.shape)])
    served = for_serving(model)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in served.layers)
    assert all(layer.data_format == "channels_first" for layer in served.layers
               if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)))
    batch = rng.integers(0, 256, (3, 64, 48, 3)).astype(np.float32)
    expected, got = _outputs(model, batch), _outputs(served, batch)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], atol=1e-5, err_msg=name)


@TORCH_ONLY
@pytest.mark.parametrize("trunk", ["vgg19", "efficientnet_lite0"])
def test_the_exported_copy_computes_what_the_network_does_at_any_batch_size(trunk):
    model = for_serving(build_model(TAXONOMY, input_size=(64, 48), width=0.25, head_units=16, trunk=trunk))
    exported = ExportedNetwork(model, 64, 48)  # exported at a batch of 2
    rng = np.random.default_rng(1)
    for size in (1, 3, 7):
        batch = rng.integers(0, 256, (size, 64, 48, 3)).astype(np.uint8)
        expected = _outputs(model, batch)
        got = {name: keras.ops.convert_to_numpy(value) for name, value in exported(batch).items()}
        assert set(got) == set(expected)
        for name in expected:
            assert got[name].shape == expected[name].shape
            np.testing.assert_allclose(got[name], expected[name], atol=1e-6, err_msg=name)


def test_a_network_the_copy_does_not_cover_is_refused():
    inputs = keras.Input((8, 6, 3))
    features = keras.layers.Flatten()(keras.layers.Conv2D(4, 3)(keras.layers.Rescaling(1 / 255)(inputs)))
    with pytest.raises(ValueError, match="Flatten"):
        for_serving(keras.Model(inputs, {"out": keras.layers.Dense(2)(features)}))


@TORCH_ONLY
def test_the_served_bundle_tags_and_embeds_the_same_through_its_copy():
    images = [load_rgb(path) for path in sorted(CATALOGUE.glob("*.jpg"))[:4]] + [load_rgb(STREET / "0001.jpg")]
    served = Classifier(ROOT / "models" / "fashion-lite0")
    trained = Classifier(ROOT / "models" / "fashion-lite0", serving_graph=False)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in served.model.layers)
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in trained.model.layers)
    (tags, embeddings), (tags_before, embeddings_before) = (
        classifier.predict_with_embeddings(images) for classifier in (served, trained))
    # on the CPU the copy ran exported; the network as trained never is
    assert isinstance(served._runnable(served.model), ExportedNetwork)
    assert trained._runnable(trained.model) is trained.model
    np.testing.assert_allclose(embeddings, embeddings_before, atol=1e-5)
    assert [{task: tag[task]["label"] for task in TASKS} for tag in tags] == \
        [{task: tag[task]["label"] for task in TASKS} for tag in tags_before]
    probs, probs_before = served.predict_proba(images), trained.predict_proba(images)
    for task in probs:
        np.testing.assert_allclose(probs[task], probs_before[task], atol=1e-5, err_msg=task)


def test_making_the_copy_does_not_import_tensorflow(tmp_path):
    # Keras' get_config() imports TensorFlow to check a type (a torch worker otherwise never loads it):
    # the copy is built from the layers' attributes instead.
    script = ("import sys\nfrom classification import runtime\nfrom classification.model import build_model\n"
              "from classification.serving_graph import for_serving\n"
              "from tests.classification.test_serving_graph import TAXONOMY\n"
              "assert 'tensorflow' not in sys.modules\n"
              "for_serving(build_model(TAXONOMY, input_size=(64, 48), width=0.25, head_units=16, trunk='efficientnet_lite0'))\n"
              "print('tensorflow' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "KERAS_BACKEND": "torch", "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "False"


@TORCH_ONLY
def test_both_views_in_one_call_give_what_two_calls_give():
    images = [load_rgb(path) for path in sorted(CATALOGUE.glob("*.jpg"))[4:9]]
    one_call = Classifier(ROOT / "models" / "fashion-lite0", flip_average=True, neighbour_vote=False)
    two_calls = Classifier(ROOT / "models" / "fashion-lite0", flip_average=True, neighbour_vote=False, batch_size=8)
    probs, probs_before = one_call.predict_proba(images), two_calls.predict_proba(images)  # 2 x 5 > 8: two calls
    for task in probs:
        np.testing.assert_allclose(probs[task], probs_before[task], atol=1e-5, err_msg=task)


@TORCH_ONLY
def test_garment_crops_are_read_at_the_garment_size_and_whole_images_at_the_images_size():
    photos = [load_rgb(STREET / "0001.jpg"), load_rgb(STREET / "0002.jpg")]
    crops = [photos[0][100:400, 100:300], photos[1][200:500, 50:350]]
    served = Classifier(ROOT / "models" / "fashion-lite0")  # its manifest: garments at 192x144
    assert served.input_size == (160, 120) and served.garment_input_size == (192, 144)
    assert all(version.count("+garments-192x144") == 1 for version in served.versions.values())
    assert "+garments-192x144" in served.embedding_version
    # a photo, its garment; another photo, its garment: the pipeline's rows
    _, embeddings = served.predict_with_embeddings([photos[0], crops[0], photos[1], crops[1]],
                                                   whole_image_rows=[0, 0, 2, 2])
    at_garment_size = Classifier(ROOT / "models" / "fashion-lite0", input_size=(192, 144))
    at_image_size = Classifier(ROOT / "models" / "fashion-lite0", garment_input_size=(160, 120))
    assert "+garments" not in at_image_size.versions["category"]
    np.testing.assert_allclose(embeddings[[1, 3]], at_garment_size.predict_with_embeddings(crops)[1], atol=1e-5)
    np.testing.assert_allclose(embeddings[[0, 2]], at_image_size.predict_with_embeddings(photos)[1], atol=1e-5)
    # the evaluate CLI's street crops: read as garments when it says so
    for task in ("articleType", "masterCategory"):
        np.testing.assert_allclose(served.predict_proba(crops, garments=True)[task],
                                   at_garment_size.predict_proba(crops)[task], atol=1e-5)
        np.testing.assert_allclose(served.predict_proba(crops)[task], at_image_size.predict_proba(crops)[task], atol=1e-5)
    # told nothing about rows, every image is read at the images' size
    np.testing.assert_allclose(served.predict_with_embeddings(crops)[1],
                               at_image_size.predict_with_embeddings(crops)[1], atol=1e-5)
    # asked, every row says how the kind gate read its whole image (what the pipeline's fragments rule reads)
    tags, _ = served.predict_with_embeddings([photos[0], crops[0], photos[1]], whole_image_rows=[0, 0, 2],
                                             tell_image_kind=True)
    read = served.image_kinds(served.embedding_inputs([photos[0], photos[1]])[0])
    assert [t["image_kind"] for t in tags] == [read[0], read[0], read[1]] and set(read) <= {"catalogue", "photo", "street"}
    assert "image_kind" not in served.predict_with_embeddings(crops, whole_image_rows=[0, 1])[0][0]
