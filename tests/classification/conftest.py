import json

import pytest

from .catalogue_factory import make_catalogue


@pytest.fixture(scope="session")
def tiny_catalogue(tmp_path_factory):
    return make_catalogue(tmp_path_factory.mktemp("catalogue"), n=60)


# Per trunk: the options of a tiny, fast model. The pretrained trunk trains on all three kinds of image.
TRUNK_OPTIONS = {
    "vgg19": ["--width", "0.125", "--head-units", "32"],
    "efficientnet_lite0": ["--trunk", "efficientnet_lite0", "--frozen-stages", "2", "--height", "64",
                           "--input-width", "48", "--head-units", "32"],
}


@pytest.fixture(scope="session")
def tiny_photos(tmp_path_factory):
    from .photo_factory import make_photos

    return make_photos(tmp_path_factory.mktemp("photos"), n=24)


@pytest.fixture(scope="session")
def tiny_street(tmp_path_factory):
    from tests.detection.fixtures import write_ccp

    return write_ccp(tmp_path_factory.mktemp("street") / "ccp", count=3)


def training_args(trunk, catalogue, photos, street, bundle, run_dir, epochs=1):
    return ["--catalogue", str(catalogue), "--photos", str(photos), "--street", str(street),
            "--bundle", str(bundle), "--run-dir", str(run_dir), "--epochs", str(epochs), "--steps-per-epoch", "2",
            "--batch-size", "8", "--seed", "7", "--max-side", "96", "--workers", "1", *TRUNK_OPTIONS[trunk]]


@pytest.fixture(scope="session", params=sorted(TRUNK_OPTIONS))
def trained_bundle(request, tiny_catalogue, tiny_photos, tiny_street, tmp_path_factory):
    """A tiny bundle of each trunk trained for two steps by the real training CLI."""
    from classification import train

    root = tmp_path_factory.mktemp(f"trained-{request.param}")
    bundle, run_dir = root / "bundle", root / "run"
    train.main(training_args(request.param, tiny_catalogue, tiny_photos, tiny_street, bundle, run_dir))
    return {"trunk": request.param, "bundle": bundle, "run_dir": run_dir,
            "manifest": json.loads((bundle / "manifest.json").read_text())}


@pytest.fixture(scope="session")
def shared_datasets():
    """The project's real datasets beside the checkout (CI has them); tests that need them skip without."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
    if not (root / "fashion-product-images-small" / "styles.csv").is_file():
        pytest.skip("../shared/datasets is not beside this checkout")
    return root
