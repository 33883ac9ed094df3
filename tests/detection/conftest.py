import pytest

from detection import train

from .fixtures import write_deepfashion2


@pytest.fixture(scope="session")
def trained_detector(tmp_path_factory):
    """A detector trained for two iterations on a tiny DeepFashion2-layout dataset the fixture writes."""
    root = tmp_path_factory.mktemp("detector")
    data = write_deepfashion2(root / "df2", count=6)
    train.main(["--dataset", "deepfashion2", "--data", str(data), "--bundle", str(root / "bundle"),
                "--run-dir", str(root / "run"), "--epochs", "1", "--max-iters", "2", "--min-size", "128",
                "--max-size", "160", "--workers", "0", "--val-fraction", "0.34"])
    return root
