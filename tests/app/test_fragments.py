"""Which detections are parts of a larger garment (app/fragments.py)."""
import pytest

from app.fragments import GarmentFragments, share_inside

COAT = (0.0, 0.0, 100.0, 200.0)


def test_share_inside_is_the_part_of_a_box_inside_another():
    assert share_inside((10.0, 10.0, 50.0, 50.0), COAT) == 1.0
    assert share_inside((50.0, 0.0, 150.0, 100.0), COAT) == pytest.approx(0.5)  # half of it sticks out
    assert share_inside((200.0, 0.0, 300.0, 10.0), COAT) == 0.0
    assert share_inside((5.0, 5.0, 5.0, 50.0), COAT) == 0.0  # an empty box is inside nothing
    assert share_inside(COAT, (10.0, 10.0, 50.0, 50.0)) == pytest.approx(0.08)  # not symmetric


def test_boxes_mostly_inside_a_larger_kept_one_are_fragments():
    rule = GarmentFragments.parse("0.8")
    sleeve, leg, beside = (0.0, 0.0, 30.0, 90.0), (60.0, 100.0, 110.0, 200.0), (150.0, 0.0, 250.0, 100.0)
    # the sleeve lies wholly inside the coat, the leg 80% inside (10 of 50 px stick out): both fragments
    assert rule.kept([sleeve, COAT, leg, beside], "photo") == [1, 3]
    assert GarmentFragments.parse("0.9").kept([sleeve, COAT, leg, beside], "photo") == [1, 2, 3]
    # a fragment of a fragment is judged against the garments kept, not against the dropped part
    assert rule.kept([COAT, (0.0, 0.0, 10.0, 10.0)], "photo") == [0]
    assert rule.kept([], "photo") == []


def test_only_images_of_the_kinds_given_are_checked():
    inside = [COAT, (10.0, 10.0, 50.0, 50.0)]
    assert GarmentFragments.parse("0.8").kept(inside, "street") == [0, 1]
    assert GarmentFragments.parse("0.8").kept(inside, None) == [0, 1]  # no kind gate: nothing is dropped
    assert GarmentFragments.parse("0.8", "all").kept(inside, "street") == [0]
    assert GarmentFragments.parse("off").kept(inside, "photo") == [0, 1]


def test_the_rule_is_named_and_bad_specs_refused():
    assert GarmentFragments.parse("0.8").name == "0.8/photo"
    assert GarmentFragments.parse("1", "photo,catalogue").name == "1/catalogue+photo"
    assert GarmentFragments.parse("0.75", "all").name == "0.75" and GarmentFragments.parse("OFF").name == "off"
    for bad in ("0", "1.5", "most", ""):
        with pytest.raises(ValueError, match="garment fragments"):
            GarmentFragments.parse(bad)
    with pytest.raises(ValueError, match="kinds"):
        GarmentFragments.parse("0.8", "people")
