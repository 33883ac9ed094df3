import json

import pytest

from .catalogue_factory import make_catalogue


@pytest.fixture(scope="session")
def tiny_catalogue(tmp_path_factory):
    return make_catalogue(tmp_path_factory.mktemp("catalogue"), n=60)


@pytest.fixture(scope="session")
def trained_bundle(tiny_catalogue, tmp_path_factory):
    """A tiny bundle trained for two steps by the real training CLI."""
    from classification import train

    root = tmp_path_factory.mktemp("trained")
    bundle, run_dir = root / "bundle", root / "run"
    train.main(["--data", str(tiny_catalogue), "--bundle", str(bundle), "--run-dir", str(run_dir),
                "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "8", "--width", "0.125",
                "--head-units", "32", "--seed", "7"])
    return {"bundle": bundle, "run_dir": run_dir, "manifest": json.loads((bundle / "manifest.json").read_text())}
