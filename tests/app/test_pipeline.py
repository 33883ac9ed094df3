"""The pipeline around the models: which detections become garment items."""
import io

import numpy as np
import pytest

from app import create_app
from app.config import Settings
from app.fragments import GarmentFragments
from app.pipeline import Pipeline
from classification.bundle import garments_suffix
from classification.detector_prior import DetectorPrior, allowed_paths
from classification.garment_context import GarmentContext
from classification.product_garment import ProductGarment
from detection.inference import Detection, crop_detection

from .servers import garment_photo


def test_garments_too_small_to_classify_are_not_reported(pipeline, monkeypatch):
    image = np.full((80, 60, 3), 200, dtype=np.uint8)
    mask = np.zeros((80, 60), dtype=bool)
    found = [Detection((5.0, 5.0, 45.0, 60.0), mask, "top", 0.9),      # 40 x 55: kept
             Detection((10.0, 64.0, 18.0, 74.0), mask, "footwear", 0.8),  # 8 x 10: dropped
             Detection((20.0, 10.0, 36.0, 26.0), mask, "hat", 0.7)]      # 16 x 16: kept (at the limit)
    strict = Pipeline(pipeline.detector, pipeline.classifier, garment_min_side=16)
    monkeypatch.setattr(strict.detector, "detect", lambda images: [list(found) for _ in images])
    items = strict.analyse(image, {})
    assert [i["kind"] for i in items] == ["product", "garment", "garment"]
    assert [i["detector"]["label"] for i in items[1:]] == ["top", "hat"]
    everything = Pipeline(pipeline.detector, pipeline.classifier, garment_min_side=0).analyse(image, {})
    assert [i["detector"]["label"] for i in everything[1:]] == ["top", "footwear", "hat"]


# ---- the detector prior ---------------------------------------------------------------------------------

def path_of(item):
    return tuple(item["category"][level]["label"] for level in ("masterCategory", "subCategory", "articleType"))


def with_prior(pipeline, monkeypatch, spec, min_score=0.0, found=None, kinds=None):
    """The committed models behind a pipeline with the prior `spec`; the detector answers `found`."""
    prior = DetectorPrior.parse(spec, pipeline.classifier.taxonomy, min_score, kinds)
    constrained = Pipeline(pipeline.detector, pipeline.classifier, garment_min_side=0, prior=prior)
    if found is not None:
        monkeypatch.setattr(constrained.detector, "detect", lambda images: [list(found) for _ in images])
    return constrained


# A striped photo: whatever the classifier makes of it, the detector's class decides under "hard".
PHOTO = np.where(((np.arange(160) // 8) % 2 == 0)[:, None, None], np.uint8([40, 60, 200]), np.uint8([230, 230, 230]))
PHOTO = np.ascontiguousarray(np.broadcast_to(PHOTO, (160, 120, 3)), dtype=np.uint8)
FULL = np.ones(PHOTO.shape[:2], dtype=bool)
FOUND = [Detection((0.0, 0.0, 120.0, 160.0), FULL, "footwear", 0.61),
         Detection((0.0, 0.0, 120.0, 160.0), FULL, "accessory", 0.9),  # no mapping: never constrained
         Detection((0.0, 0.0, 120.0, 160.0), FULL, "skirt", 0.55)]


def test_hard_prior_constrains_garments_but_never_the_product(pipeline, monkeypatch):
    off = with_prior(pipeline, monkeypatch, "off", found=FOUND).analyse(PHOTO, {})
    hard = with_prior(pipeline, monkeypatch, "hard", found=FOUND).analyse(PHOTO, {})
    allowed = allowed_paths(pipeline.classifier.taxonomy)
    product, footwear, accessory, skirt = hard
    assert product["kind"] == "product" and product["category"]["constrained_by"] is None
    assert product["category"] == off[0]["category"]
    assert path_of(footwear) in allowed["footwear"] and footwear["category"]["constrained_by"] == "detector:footwear"
    assert path_of(skirt) in allowed["skirt"] and skirt["category"]["constrained_by"] == "detector:skirt"
    assert accessory["category"] == off[2]["category"]  # unconstrained class: today's answer, no field
    assert all(item["category"]["constrained_by"] is None for item in off)
    # The reported confidences and top-3 stay the classifier's own.
    assert footwear["category"]["articleType"]["top3"] == off[1]["category"]["articleType"]["top3"]
    classifier = pipeline.classifier  # the served probabilities of the crop, read as a garment (its size)
    probs = classifier.voted(*classifier.embedding_inputs([crop_detection(PHOTO, FOUND[0].box, mask=FULL)], garments=[True]))
    taxonomy = pipeline.classifier.taxonomy
    for level, label in zip(("masterCategory", "subCategory", "articleType"), path_of(footwear)):
        model_own = probs[level][0, taxonomy.index(level, label)]
        assert footwear["category"][level]["confidence"] == pytest.approx(model_own, rel=1e-3, abs=1e-6)


def test_weak_detections_are_not_used_as_evidence(pipeline, monkeypatch):
    items = with_prior(pipeline, monkeypatch, "hard", min_score=0.6, found=FOUND).analyse(PHOTO, {})
    assert [i["category"]["constrained_by"] for i in items] == [None, "detector:footwear", None, None]


def test_the_prior_constrains_only_the_garments_of_images_the_kind_gate_reads_as_street_photos(pipeline, monkeypatch):
    # On phone photos of one garment the street detector calls shirts dresses (bench/photo_garments.py): the
    # garments of an image the classifier's kind gate reads as a phone photo keep the classifier's category.
    off = with_prior(pipeline, monkeypatch, "off", found=FOUND).analyse(PHOTO, {})
    everywhere = with_prior(pipeline, monkeypatch, "hard", found=FOUND, kinds="all").analyse(PHOTO, {})

    def gate_reads(*kinds):  # the product (the whole image) first, then its three garments
        monkeypatch.setattr(pipeline.classifier, "image_kinds", lambda features: list(kinds))
        return with_prior(pipeline, monkeypatch, "hard", found=FOUND, kinds="street").analyse(PHOTO, {})

    # A phone photo: no garment constrained, however street-like a crop of it looks.
    photo = gate_reads("photo", "street", "street", "street")
    assert [i["category"] for i in photo] == [i["category"] for i in off]
    # A street photo: the detector's class constrains every garment, as with `all`.
    street = gate_reads("street", "photo", "photo", "photo")
    assert [i["category"] for i in street] == [i["category"] for i in everywhere]
    assert [i["category"]["constrained_by"] for i in street] == [None, "detector:footwear", None, "detector:skirt"]


def test_the_prior_is_part_of_the_bundle_key(pipeline, monkeypatch):
    models_only = f"{pipeline.detector.version}|{pipeline.classifier.versions['category']}|" \
                  f"{pipeline.classifier.versions['style']}"
    off = with_prior(pipeline, monkeypatch, "off")
    soft = with_prior(pipeline, monkeypatch, "soft:0.001", min_score=0.7)
    assert off.bundle_key == f"{models_only}|colours:no-backdrop|crop:box" and "detector_prior" not in off.bundles
    assert soft.bundle_key == f"{models_only}|prior:soft:0.001@0.7|colours:no-backdrop|crop:box"
    assert soft.bundles["detector_prior"] == "soft:0.001@0.7"
    street = with_prior(pipeline, monkeypatch, "hard", kinds="street")
    assert street.bundle_key == f"{models_only}|prior:hard/street|colours:no-backdrop|crop:box"  # analyses made otherwise are stale


def test_settings_choose_the_prior(pipeline, monkeypatch):
    assert Settings.from_env({}).garment_detector_prior == "hard"  # the measured best (bench/street_tags.py)
    assert Settings.from_env({}).garment_detector_prior_kinds == "street"  # and bench/photo_garments.py
    assert Settings.from_env({"GARMENT_DETECTOR_PRIOR_KINDS": "all"}).garment_detector_prior_kinds == "all"
    settings = Settings.from_env({"GARMENT_DETECTOR_PRIOR": "soft:0.01", "GARMENT_DETECTOR_PRIOR_MIN_SCORE": "0.8"})
    assert (settings.garment_detector_prior, settings.garment_detector_prior_min_score) == ("soft:0.01", 0.8)
    monkeypatch.setattr(Pipeline, "__init__", lambda self, *args: setattr(self, "args", args) or None)
    monkeypatch.setattr("app.pipeline.Detector", lambda *a, **k: pipeline.detector)
    monkeypatch.setattr("app.pipeline.Classifier", lambda *a, **k: pipeline.classifier)
    *_, prior, garment_crop, context, fragments, product_garment = Pipeline.load(settings.replace(garment_crop="masked")).args
    assert (prior.mode, prior.weight, prior.min_score, prior.kinds) == ("soft", 0.01, 0.8, frozenset({"street"}))
    assert garment_crop == "masked"
    # the weight chosen cross-half by bench/garment_context_probe.py; phone photos and catalogue thumbnails
    assert context.name == "log:0.35/catalogue+photo"
    settings = Settings.from_env({"GARMENT_CONTEXT": "linear:0.5", "GARMENT_CONTEXT_KINDS": "all"})
    assert Pipeline.load(settings).args[-3].name == "linear:0.5"
    assert fragments.name == "0.8/catalogue+photo"  # set by geometry: four fifths of a box inside a larger garment's
    settings = Settings.from_env({"GARMENT_FRAGMENTS": "off"})
    assert Pipeline.load(settings).args[-2].containment is None
    # chosen cross-half by bench/product_garment_probe.py, on phone photos only
    assert product_garment.name == "log:0.35/photo"
    settings = Settings.from_env({"PRODUCT_GARMENT": "off", "PRODUCT_GARMENT_KINDS": "all"})
    assert Pipeline.load(settings).args[-1].pooling == "off"
    with pytest.raises(ValueError, match="garment context"):
        Pipeline.load(Settings.from_env({"PRODUCT_GARMENT": "log:2"}))


# ---- a garment read with its whole image ----------------------------------------------------------------

PART = [Detection((10.0, 20.0, 70.0, 90.0), FULL, "dress", 0.8)]  # a part of the photo, as on a flat garment


def test_a_phone_photos_garments_are_read_with_the_whole_photo(pipeline, monkeypatch):
    def analysed(spec, *kinds):  # the gate's reading of the product (the whole image), then of the garment
        monkeypatch.setattr(pipeline.classifier, "image_kinds", lambda features: list(kinds))
        pooled = Pipeline(pipeline.detector, pipeline.classifier, garment_min_side=0,
                          context=GarmentContext.parse(spec))
        monkeypatch.setattr(pooled.detector, "detect", lambda images: [list(PART) for _ in images])
        return pooled.analyse(PHOTO, {})

    product, garment = analysed("off", "photo", "photo")
    confidence = garment["category"]["articleType"]["top3"][0]["confidence"]
    assert confidence != pytest.approx(product["category"]["articleType"]["top3"][0]["confidence"], abs=1e-4)
    # At weight 1 a phone photo's garment reads exactly as its photo; colour, season and usage stay its own.
    whole, read_with = analysed("log:1", "photo", "street")
    assert whole["category"] == product["category"]
    for task in ("gender", "masterCategory", "subCategory", "articleType"):
        assert read_with["category"][task]["label"] == product["category"][task]["label"]
        assert read_with["category"][task]["confidence"] == pytest.approx(product["category"][task]["confidence"],
                                                                         rel=1e-4)
    assert read_with["style"] == garment["style"]
    assert read_with["category"]["constrained_by"] == "image" and garment["category"]["constrained_by"] is None
    # A street photo's garments keep their own reading, whatever the gate makes of the crop.
    _, street = analysed("log:1", "street", "photo")
    assert street["category"] == garment["category"] and street["category"]["constrained_by"] is None


def test_a_garment_steered_by_both_the_detector_and_its_image_says_so(pipeline, monkeypatch):
    monkeypatch.setattr(pipeline.classifier, "image_kinds", lambda features: ["photo", "photo"])
    both = Pipeline(pipeline.detector, pipeline.classifier, garment_min_side=0,
                    prior=DetectorPrior.parse("hard", pipeline.classifier.taxonomy, 0.0, "photo"),
                    context=GarmentContext.parse("log:0.35"))
    footwear = [Detection((10.0, 20.0, 70.0, 90.0), FULL, "footwear", 0.8)]
    monkeypatch.setattr(both.detector, "detect", lambda images: [list(footwear) for _ in images])
    assert both.analyse(PHOTO, {})[1]["category"]["constrained_by"] == "detector:footwear+image"


def test_the_garment_context_is_part_of_the_bundle_key(pipeline):
    models_only = f"{pipeline.detector.version}|{pipeline.classifier.versions['category']}|" \
                  f"{pipeline.classifier.versions['style']}"
    pooled = Pipeline(pipeline.detector, pipeline.classifier, context=GarmentContext.parse("log:0.35"))
    assert pooled.bundle_key == f"{models_only}|context:log:0.35/photo|colours:no-backdrop|crop:box"
    assert pooled.bundles["garment_context"] == "log:0.35/photo"
    assert "garment_context" not in Pipeline(pipeline.detector, pipeline.classifier).bundles


# ---- a phone photo read with its one garment -------------------------------------------------------------

def read_with_garment(pipeline, monkeypatch, spec, kind, found, fragments="0.8"):
    """The committed models behind a pipeline pooling a product with its one garment by `spec`; the gate
    reads every image as `kind` and the detector answers `found`."""
    monkeypatch.setattr(pipeline.classifier, "image_kinds", lambda features: [kind] * len(features))
    pooled = Pipeline(pipeline.detector, pipeline.classifier, garment_min_side=0,
                      fragments=GarmentFragments.parse(fragments, "photo"),
                      product_garment=ProductGarment.parse(spec, "photo"))
    monkeypatch.setattr(pooled.detector, "detect", lambda images: [list(found) for _ in images])
    return pooled.analyse(PHOTO, {})


def test_a_phone_photos_own_tags_are_read_with_its_one_garment(pipeline, monkeypatch):
    product, garment = read_with_garment(pipeline, monkeypatch, "off", "photo", PART)
    assert product["category"]["constrained_by"] is None
    # At weight 1 the photo's category reads exactly as its one garment did on its own; its style is its own.
    as_garment, same_garment = read_with_garment(pipeline, monkeypatch, "log:1", "photo", PART)
    for task in ("gender", "masterCategory", "subCategory", "articleType"):
        assert as_garment["category"][task]["label"] == garment["category"][task]["label"]
        assert as_garment["category"][task]["confidence"] == pytest.approx(garment["category"][task]["confidence"],
                                                                           rel=1e-4)
    assert as_garment["style"] == product["style"] and as_garment["colours"] == product["colours"]
    assert as_garment["category"]["constrained_by"] == "garment"
    np.testing.assert_allclose(as_garment["embedding"], product["embedding"], atol=1e-6)  # embeddings: untouched
    assert same_garment["category"] == garment["category"]  # the garment keeps its own reading (no context here)


def test_only_a_phone_photo_with_exactly_one_garment_is_read_with_it(pipeline, monkeypatch):
    plain = read_with_garment(pipeline, monkeypatch, "off", "photo", PIECES)[0]
    # Two garments once the sleeve is dropped as a fragment: the photo names no single one.
    assert read_with_garment(pipeline, monkeypatch, "log:1", "photo", PIECES)[0]["category"] == plain["category"]
    # The top and its sleeve: one garment once the sleeve is dropped, so the photo is read with the top.
    top_and_sleeve = PIECES[:2]
    items = read_with_garment(pipeline, monkeypatch, "log:1", "photo", top_and_sleeve)
    assert [i["detector"]["label"] for i in items[1:]] == ["top"]
    assert items[0]["category"]["constrained_by"] == "garment"
    # Without the fragments rule both are garments: not read with either.
    both = read_with_garment(pipeline, monkeypatch, "log:1", "photo", top_and_sleeve, fragments="off")
    assert both[0]["category"]["constrained_by"] is None
    # A street photo of one person in one garment keeps its own reading; so does a photo with no garment.
    street = read_with_garment(pipeline, monkeypatch, "log:1", "street", PART)
    assert street[0]["category"]["constrained_by"] is None
    alone = read_with_garment(pipeline, monkeypatch, "log:1", "photo", [])
    assert len(alone) == 1 and alone[0]["category"]["constrained_by"] is None


def test_the_product_garment_rule_is_part_of_the_bundle_key(pipeline):
    pooled = Pipeline(pipeline.detector, pipeline.classifier, product_garment=ProductGarment.parse("log:0.35"))
    assert pooled.bundle_key.endswith("|product-garment:log:0.35/photo|colours:no-backdrop|crop:box")
    assert pooled.bundles["product_garment"] == "log:0.35/photo"
    assert "product_garment" not in Pipeline(pipeline.detector, pipeline.classifier).bundles


# ---- parts of one garment boxed again --------------------------------------------------------------------

# A garment, a sleeve of it (wholly inside), and a garment beside it that overlaps it a little.
PIECES = [Detection((10.0, 10.0, 100.0, 150.0), FULL, "top", 0.9),
          Detection((12.0, 20.0, 40.0, 80.0), FULL, "dress", 0.7),
          Detection((80.0, 100.0, 120.0, 160.0), FULL, "footwear", 0.6)]


def test_parts_of_a_phone_photos_garment_are_not_reported_as_more_garments(pipeline, monkeypatch):
    def analysed(spec, kind):  # the gate's reading of the whole image
        monkeypatch.setattr(pipeline.classifier, "image_kinds", lambda features: [kind] * len(features))
        checked = Pipeline(pipeline.detector, pipeline.classifier, garment_min_side=0,
                           fragments=GarmentFragments.parse(spec))
        monkeypatch.setattr(checked.detector, "detect", lambda images: [list(PIECES) for _ in images])
        return checked.analyse(PHOTO, {})

    everything = analysed("off", "photo")
    assert [i["detector"]["label"] for i in everything[1:]] == ["top", "dress", "footwear"]
    photo = analysed("0.8", "photo")
    assert [i["detector"]["label"] for i in photo[1:]] == ["top", "footwear"]  # the sleeve was part of the top
    assert [i["position"] for i in photo] == [0, 1, 2]
    for kept, same in ((photo[1], everything[1]), (photo[2], everything[3])):  # the rest read as before
        assert kept["category"] == same["category"] and kept["box"] == same["box"]
        np.testing.assert_allclose(kept["embedding"], same["embedding"], atol=1e-6)
    # a street photo's garment inside another's box is usually a real one (a blouse under a coat)
    assert [i["detector"]["label"] for i in analysed("0.8", "street")[1:]] == ["top", "dress", "footwear"]


def test_the_garment_fragments_rule_is_part_of_the_bundle_key(pipeline):
    checked = Pipeline(pipeline.detector, pipeline.classifier, fragments=GarmentFragments.parse("0.8"))
    assert checked.bundle_key.endswith("|fragments:0.8/photo|colours:no-backdrop|crop:box")
    assert checked.bundles["garment_fragments"] == "0.8/photo"
    assert "garment_fragments" not in Pipeline(pipeline.detector, pipeline.classifier).bundles


def test_the_mirror_view_setting_reaches_the_classifier_and_the_bundle_key(pipeline, monkeypatch):
    monkeypatch.setattr("app.pipeline.Detector", lambda *a, **k: pipeline.detector)
    # The served bundle's manifest asks for the mirror view; the setting overrides it.
    assert pipeline.classifier.flip_average is True
    plain = Pipeline.load(Settings.from_env({"CLASSIFIER_FLIP_AVERAGE": "0"}))
    assert plain.classifier.flip_average is False
    # Analyses made with the mirror view are not served from the cache of those made without, and their
    # embeddings live in a space of their own.
    assert "+flip" in pipeline.classifier.versions["category"] and "+flip" not in plain.bundle_key
    assert "+flip" in pipeline.embedding_model and "+flip" not in plain.embedding_model
    unsure_only = Pipeline.load(Settings.from_env({"CLASSIFIER_FLIP_AVERAGE": "0.8"}))
    garments = garments_suffix(unsure_only.classifier.garment_input_size, unsure_only.classifier.input_size)
    assert unsure_only.classifier.flip_average == 0.8 and f"+flip<0.8{garments}+vote-" in unsure_only.bundle_key


def test_the_neighbour_vote_setting_reaches_the_classifier_and_the_bundle_key(pipeline, monkeypatch):
    monkeypatch.setattr("app.pipeline.Detector", lambda *a, **k: pipeline.detector)
    # The served bundle has a neighbour vote; the setting turns it off. Tags made with it are not served
    # from the cache of those made without; nor are embeddings compared across it (the served head's
    # class profile reads the served probabilities).
    assert pipeline.classifier.neighbour_vote is not None and "+vote-" in pipeline.bundle_key
    plain = Pipeline.load(Settings.from_env({"CLASSIFIER_NEIGHBOUR_VOTE": "0"}))
    assert plain.classifier.neighbour_vote is None and "+vote-" not in plain.bundle_key
    assert "+vote-" in pipeline.embedding_model and "+vote-" not in plain.embedding_model


def test_the_feature_heads_setting_reaches_the_classifier_and_the_bundle_key(pipeline, monkeypatch):
    monkeypatch.setattr("app.pipeline.Detector", lambda *a, **k: pipeline.detector)
    # The served bundle has a gender feature head; the setting turns it off, the same way as the vote.
    assert pipeline.classifier.feature_heads is not None and "+heads-" in pipeline.bundle_key
    plain = Pipeline.load(Settings.from_env({"CLASSIFIER_FEATURE_HEADS": "0"}))
    assert plain.classifier.feature_heads is None and "+heads-" not in plain.bundle_key
    assert "+vote-" in plain.bundle_key and "+heads-" in pipeline.embedding_model and "+heads-" not in plain.embedding_model


def test_the_response_and_the_stored_item_say_the_category_was_constrained(settings, pipeline, monkeypatch):
    app = create_app(settings)
    shoe = Detection((75.0, 80.0, 225.0, 240.0), np.ones((400, 300), dtype=bool), "footwear", 0.61)
    app.extensions["pipeline"].set(with_prior(pipeline, monkeypatch, "hard", found=[shoe]))
    client = app.test_client()
    response = client.post("/v1/analyses", data={"image": (io.BytesIO(garment_photo((30, 160, 60))), "g.jpg")},
                           content_type="multipart/form-data")
    assert response.status_code == 201, response.json
    items = response.json["items"]
    assert [i["category"]["constrained_by"] for i in items] == [None, "detector:footwear"]
    assert client.get(f"/v1/analyses/{response.json['id']}").json == response.json
    listed = client.get("/v1/items", query_string={"kind": "garment"}).json["items"]
    assert listed[0]["category"]["constrained_by"] == "detector:footwear"
    app.extensions["engine"].dispose()


# ---- how garments are cut out for the classifier ------------------------------------------------------------

def test_box_crops_keep_the_photo_around_the_garment_and_masked_crops_paint_it_white(pipeline, monkeypatch):
    mask = np.zeros(PHOTO.shape[:2], dtype=bool)
    mask[40:120, 30:90] = True  # the garment fills part of its box
    found = [Detection((30.0, 40.0, 90.0, 120.0), mask, "top", 0.9)]
    seen, classify = {}, pipeline.classifier.predict_with_embeddings

    def recording(crops, *args, **options):  # what the classifier is given
        seen[style] = crops
        return classify(crops, *args, **options)

    monkeypatch.setattr(pipeline.detector, "detect", lambda images: [list(found) for _ in images])
    monkeypatch.setattr(pipeline.classifier, "predict_with_embeddings", recording)
    for style in ("box", "masked"):
        items = Pipeline(pipeline.detector, pipeline.classifier, garment_min_side=0, garment_crop=style).analyse(PHOTO, {})
        assert [i["kind"] for i in items] == ["product", "garment"]
    # 10% of the box on every side: 6 px left and right, 8 px above and below.
    box, masked = seen["box"][1], seen["masked"][1]
    assert box.shape == masked.shape == (96, 72, 3)
    np.testing.assert_array_equal(box, PHOTO[32:128, 24:96])  # the photo as it is, context included
    inside = mask[32:128, 24:96]
    np.testing.assert_array_equal(masked[inside], box[inside])
    assert (masked[~inside] == 255).all() and not (box[~inside] == 255).all()


def test_the_garment_crop_is_part_of_the_bundle_key_and_the_embedding_model(pipeline):
    masked = Pipeline(pipeline.detector, pipeline.classifier, garment_crop="masked")
    box = Pipeline(pipeline.detector, pipeline.classifier)  # the default
    # Masked was the first way: analyses and vectors stored with it keep their keys.
    assert "crop" not in masked.bundle_key and masked.embedding_model == pipeline.classifier.embedding_version
    assert box.bundle_key == f"{masked.bundle_key}|crop:box" and box.bundles["garment_crop"] == "box"
    assert box.embedding_model == f"{pipeline.classifier.embedding_version}|crop:box"
    with pytest.raises(ValueError, match="GARMENT_CROP"):
        Pipeline(pipeline.detector, pipeline.classifier, garment_crop="mask")


def test_settings_choose_the_garment_crop():
    assert Settings.from_env({}).garment_crop == "box"  # the measured best (bench/street_tags.py)
    assert Settings.from_env({"GARMENT_CROP": "masked"}).garment_crop == "masked"
