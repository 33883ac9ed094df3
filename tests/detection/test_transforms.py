import numpy as np
import torch

from detection.records import Instance
from detection.transforms import downscale, load_sample, train_transforms


def instance(mask: np.ndarray, category: int = 1) -> Instance:
    ys, xs = np.nonzero(mask)
    return Instance(category, (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)), mask)


def test_downscale_moves_boxes_and_masks_with_the_pixels():
    image = np.zeros((200, 100, 3), dtype=np.uint8)
    mask = np.zeros((200, 100), dtype=bool)
    mask[40:120, 20:60] = True
    small, instances = downscale(image, [instance(mask)], shorter_side=50)
    assert small.shape == (100, 50, 3) and small.dtype == np.uint8
    [scaled] = instances
    assert scaled.mask.shape == (100, 50) and scaled.box == (10.0, 20.0, 30.0, 60.0)
    assert scaled.mask[20:60, 10:30].all() and scaled.mask.sum() == 40 * 20


def test_downscale_never_enlarges_and_drops_instances_that_vanish():
    image = np.zeros((60, 80, 3), dtype=np.uint8)
    same, kept = downscale(image, [], shorter_side=100)
    assert same is image and kept == []
    speck = np.zeros((60, 80), dtype=bool)
    speck[31, 41] = True
    _, instances = downscale(image, [instance(speck)], shorter_side=6)
    assert instances == []


def test_training_sample_keeps_masks_aligned_with_boxes():
    torch.manual_seed(0)
    mask = np.zeros((120, 90), dtype=bool)
    mask[30:90, 10:50] = True
    image = np.full((120, 90, 3), 255, dtype=np.uint8)
    tensor, target = load_sample([instance(mask, 3)], image, train_transforms(64))
    assert tensor.dtype == torch.float32 and 0 <= tensor.min() and tensor.max() <= 1
    assert target["labels"].tolist() == [3]
    x1, y1, x2, y2 = target["boxes"][0].round().int().tolist()
    ys, xs = torch.nonzero(target["masks"][0], as_tuple=True)
    assert abs(xs.min().item() - x1) <= 1 and abs(ys.min().item() - y1) <= 1
    assert abs(xs.max().item() + 1 - x2) <= 1 and abs(ys.max().item() + 1 - y2) <= 1


def test_scale_jitter_reaches_the_model_in_training_and_not_at_serving():
    from torchvision.models.detection.transform import GeneralizedRCNNTransform
    from types import SimpleNamespace

    from detection.transforms import jitter_model_scale, scale_jitter_sizes

    assert scale_jitter_sizes(512) == (384, 416, 448, 480, 512, 544, 576, 608, 640)
    assert scale_jitter_sizes(100, 0.9, 1.1, step=8) == (90, 98, 100, 106)  # the serving size is always one
    transform = GeneralizedRCNNTransform(512, 768, [0.5] * 3, [0.5] * 3)
    jitter_model_scale(SimpleNamespace(transform=transform), scale_jitter_sizes(64), aspect=1.5)
    image = torch.rand(3, 60, 40)
    torch.manual_seed(0)
    seen = {transform.train()([image])[0].image_sizes[0] for _ in range(30)}
    # Shorter side 48..80, longer side 1.5x it: the longer-side limit (120) follows, so 80 is not capped.
    assert {s[1] for s in seen} == {48, 64, 80} and (120, 80) in seen
