import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from detection.records import read_ccp, read_deepfashion2, split_records, to_coco
from detection.taxonomy import CCP_CLASSES, CCP_GROUPS, DEEPFASHION2

from .fixtures import CCP_LABELS, write_ccp, write_deepfashion2


def test_ccp_grouping_covers_every_label_once():
    grouped = [name for members in CCP_GROUPS.values() for name in members]
    from detection.taxonomy import CCP_IGNORED
    assert sorted(grouped + list(CCP_IGNORED)) == sorted(CCP_LABELS)
    assert len(grouped) == len(set(grouped))


def test_ccp_pixel_labels_become_instances(tmp_path):
    records = read_ccp(write_ccp(tmp_path / "ccp"))
    assert [r.image_id for r in records] == [1, 2] and (records[0].width, records[0].height) == (120, 160)
    instances = records[0].instances()
    names = sorted(CCP_CLASSES[i.category - 1] for i in instances)
    # blouse + vest touch: one top; two separate shoes: two footwear; skin, hair and the tiny ring dropped.
    assert names == ["footwear", "footwear", "top", "trousers"]
    top = next(i for i in instances if CCP_CLASSES[i.category - 1] == "top")
    assert top.box == (30.0, 20.0, 90.0, 70.0) and top.mask.sum() == 50 * 60


def test_deepfashion2_reader_keeps_boxes_masks_and_attributes(tmp_path):
    records = read_deepfashion2(write_deepfashion2(tmp_path / "df2", count=2))
    assert len(records) == 2
    shirt, trousers = records[0].instances()
    assert DEEPFASHION2[shirt.category - 1] == "short_sleeved_shirt" and DEEPFASHION2[trousers.category - 1] == "trousers"
    assert shirt.attributes == {"occlusion": 1, "zoom_in": 1, "viewpoint": 2, "style": 1}
    x1, y1, x2, y2 = shirt.box
    assert shirt.mask[int(y1) + 5, int(x1) + 5] and not shirt.mask[int(y2) + 3, int(x2) + 3]
    assert 0.4 < trousers.mask.sum() / ((x2 - x1) * (y2 - y1) * 0 + 51 * 61) < 0.6  # a triangle fills half its box


def test_deepfashion2_reader_refuses_an_unknown_category(tmp_path):
    root = write_deepfashion2(tmp_path / "df2", count=1)
    anno = root / "annos" / "000001.json"
    data = json.loads(anno.read_text())
    data["item1"]["category_id"] = 14
    anno.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="category_id 14"):
        read_deepfashion2(root)[0].instances()


def test_coco_export_is_read_by_pycocotools(tmp_path):
    records = read_ccp(write_ccp(tmp_path / "ccp"))
    data = to_coco(records, CCP_CLASSES)
    (tmp_path / "coco.json").write_text(json.dumps(data))
    coco = COCO(str(tmp_path / "coco.json"))
    assert len(coco.getImgIds()) == 2 and len(coco.getAnnIds()) == 8
    ann = coco.loadAnns(coco.getAnnIds(imgIds=[1]))[0]
    original = records[0].instances()[0]
    np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), original.mask)
    assert coco.loadCats(ann["category_id"])[0]["name"] == CCP_CLASSES[original.category - 1]


def test_split_is_reproducible_and_disjoint(tmp_path):
    records = read_ccp(write_ccp(tmp_path / "ccp", count=10))
    split = split_records(records, 0.3, seed=5)
    assert split == split_records(records, 0.3, seed=5)
    assert not set(split["train"]) & set(split["val"]) and len(split["train"]) + len(split["val"]) == 10
