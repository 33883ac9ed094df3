import io

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from app import db
from app.models import Analysis, ImageRecord, Item

from ..common.icc import DISPLAY_P3_COLORANTS, display_p3_to_srgb, rgb_profile
from .servers import garment_photo, held_out_street_photo


def counts(app):
    with app.app_context():
        session = db.session()
        return tuple(session.scalar(select(func.count()).select_from(m)) for m in (ImageRecord, Analysis, Item))


def post_url(client, url, **extra):
    return client.post("/v1/analyses", json={"image_url": url, **extra})


def test_a_held_out_street_photo_yields_detected_and_classified_garments(client, pipeline):
    photo = held_out_street_photo(pipeline)
    width, height = Image.open(photo).size
    response = client.post("/v1/analyses", data={"image": (io.BytesIO(photo.read_bytes()), photo.name)},
                           content_type="multipart/form-data")
    assert response.status_code == 201, response.json
    garments = response.json["items"][1:]
    assert garments, "the committed detector found no garment in a street photo"
    threshold = pipeline.detector.model.roi_heads.score_thresh
    for garment in garments:
        assert garment["kind"] == "garment" and garment["detector"]["label"] in pipeline.detector.classes
        assert garment["detector"]["score"] >= threshold
        x1, y1, x2, y2 = garment["box"]
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
        assert min(x2 - x1, y2 - y1) >= 16  # GARMENT_MIN_SIDE
        assert garment["mask"]["size"] == [height, width]
        path = tuple(garment["category"][k]["label"] for k in ("masterCategory", "subCategory", "articleType"))
        assert path in pipeline.classifier.taxonomy.paths
    stored = client.get("/v1/items", query_string={"kind": "garment"}).json["items"]
    assert sorted(i["box"] for i in stored) == sorted(g["box"] for g in garments)


def test_analyse_a_url(client, image_server, pipeline):
    response = post_url(client, image_server.url("/shirt.jpg"))
    assert response.status_code == 201, response.json
    body = response.json
    assert response.headers["Location"] == f"/v1/analyses/{body['id']}"
    assert body["image"] == {"id": body["image"]["id"], "url": image_server.url("/shirt.jpg"),
                             "sha256": body["image"]["sha256"], "width": 300, "height": 400}
    assert body["bundles"] == pipeline.bundles
    assert {"fetch", "decode", "detect", "classify", "colours", "total"} <= set(body["timings_ms"])
    product = body["items"][0]
    assert product["kind"] == "product" and product["box"] is None
    path = tuple(product["category"][k]["label"] for k in ("masterCategory", "subCategory", "articleType"))
    assert path in pipeline.classifier.taxonomy.paths
    for task in ("gender", "masterCategory", "subCategory", "articleType"):
        assert 0 <= product["category"][task]["confidence"] <= 1 and len(product["category"][task]["top3"]) <= 3
    for task in ("baseColour", "season", "usage"):
        assert product["style"][task]["label"] in pipeline.classifier.taxonomy.labels[task]
    assert product["colours"][0]["hex"].startswith("#") and sum(c["share"] for c in product["colours"]) <= 1.0001
    for garment in body["items"][1:]:
        assert garment["kind"] == "garment" and len(garment["box"]) == 4 and garment["mask"]["size"] == [400, 300]


def test_same_image_twice_is_served_from_storage(client, image_server, pipeline, monkeypatch):
    first = post_url(client, image_server.url("/shirt.jpg")).json
    calls = []
    monkeypatch.setattr(pipeline, "analyse", lambda *a, **k: calls.append(1))
    again = post_url(client, image_server.url("/same-shirt.jpg"))  # same bytes, another URL
    assert again.status_code == 200 and again.json["id"] == first["id"] and calls == []
    # The second URL now finds the analysis too.
    assert client.get("/v1/images", query_string={"url": image_server.url("/same-shirt.jpg")}).json["id"] == first["id"]


def test_refresh_reanalyses(client, image_server, app):
    first = post_url(client, image_server.url("/shirt.jpg")).json
    refreshed = post_url(client, image_server.url("/shirt.jpg"), refresh=True)
    assert refreshed.status_code == 201 and refreshed.json["id"] != first["id"]
    assert counts(app)[:2] == (1, 1)
    assert client.get(f"/v1/analyses/{first['id']}").status_code == 404


def test_upload(client, app):
    data = {"image": (io.BytesIO(garment_photo((30, 160, 60))), "green.jpg")}
    response = client.post("/v1/analyses", data=data, content_type="multipart/form-data")
    assert response.status_code == 201 and response.json["image"]["url"] is None
    assert client.get(f"/v1/analyses/{response.json['id']}").json == response.json


@pytest.mark.parametrize("path, code, status", [
    ("/slow", "fetch_timeout", 504), ("/gone", "fetch_failed", 502), ("/big-streamed", "too_large", 413),
    ("/bomb.png", "image_too_large", 413), ("/truncated.jpg", "not_an_image", 422),
    ("/page.html", "unsupported_media_type", 415), ("/redirect-private", "blocked_address", 422),
])
def test_fetch_errors_are_problems_and_write_nothing(client, app, image_server, path, code, status):
    response = post_url(client, image_server.url(path))
    assert response.status_code == status and response.mimetype == "application/problem+json"
    assert response.json["code"] == code and response.json["status"] == status
    assert response.headers["X-Request-ID"]
    assert counts(app) == (0, 0, 0)


@pytest.mark.parametrize("kwargs, code, status", [
    ({"data": "not json", "content_type": "application/json"}, "invalid_request", 400),
    ({"json": {"url": "x"}}, "invalid_request", 400),
    ({"json": {"image_url": "ftp://x/y.jpg"}}, "invalid_url", 400),
    ({"json": {"image_url": "http://127.0.0.1/x.jpg", "refresh": "maybe"}}, "invalid_request", 400),
    ({"json": {"image_url": "http://10.0.0.1/x.jpg"}}, "blocked_address", 422),
    ({"data": {"file": (io.BytesIO(b"x"), "x.jpg")}, "content_type": "multipart/form-data"}, "invalid_request", 400),
])
def test_bad_requests(client, app, kwargs, code, status):
    response = client.post("/v1/analyses", **kwargs)
    assert (response.status_code, response.json["code"]) == (status, code)
    assert counts(app) == (0, 0, 0)


def test_loopback_refused_when_not_allow_listed(settings, pipeline, image_server):
    from app import create_app

    app = create_app(settings.replace(fetch_allow_private=""))
    app.extensions["pipeline"].set(pipeline)
    response = app.test_client().post("/v1/analyses", json={"image_url": image_server.url("/shirt.jpg")})
    assert response.json["code"] == "blocked_address"


def test_upload_over_the_cap(settings, pipeline):
    from app import create_app

    app = create_app(settings.replace(fetch_max_bytes=1000))
    app.extensions["pipeline"].set(pipeline)
    data = {"image": (io.BytesIO(garment_photo()), "big.jpg")}
    response = app.test_client().post("/v1/analyses", data=data, content_type="multipart/form-data")
    assert (response.status_code, response.json["code"]) == (413, "too_large")


def test_models_unavailable(settings, tmp_path, image_server):
    from app import create_app

    app = create_app(settings.replace(classifier_bundle=tmp_path / "missing"))
    client = app.test_client()
    response = client.post("/v1/analyses", json={"image_url": image_server.url("/shirt.jpg")})
    assert (response.status_code, response.json["code"]) == (503, "model_unavailable")
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json["checks"]["models"].startswith("error")
    assert counts(app) == (0, 0, 0)


def test_not_found_and_method_not_allowed(client):
    assert client.get("/v1/analyses/999").json["code"] == "not_found"
    assert client.get("/v1/images?url=http://nowhere/x.jpg").status_code == 404
    assert client.get("/v1/images").json["code"] == "invalid_request"
    not_allowed = client.delete("/v1/analyses/1")
    assert not_allowed.json["code"] == "method_not_allowed"
    assert set(not_allowed.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}


def test_items_catalogue_query_filters_and_pages(client, image_server):
    for path in ("/shirt.jpg", "/blue.jpg"):
        post_url(client, image_server.url(path))
    client.post("/v1/analyses", data={"image": (io.BytesIO(garment_photo((240, 210, 50), seed=3)), "y.jpg")},
                content_type="multipart/form-data")
    everything = client.get("/v1/items?limit=500").json["items"]
    assert len(everything) >= 3
    seen, cursor = [], None
    while True:
        page = client.get("/v1/items", query_string={"limit": 2, **({"cursor": cursor} if cursor else {})}).json
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [i["id"] for i in everything] and seen == sorted(seen)
    sample = everything[0]
    article = sample["category"]["articleType"]["label"]
    filtered = client.get("/v1/items", query_string={"articleType": article, "kind": "product"}).json["items"]
    assert filtered and all(i["category"]["articleType"]["label"] == article and i["kind"] == "product" for i in filtered)
    gender = sample["category"]["gender"]["label"]
    threshold = sample["category"]["gender"]["confidence"]
    confident = client.get("/v1/items", query_string={"gender": gender, "min_confidence": threshold}).json["items"]
    assert sample["id"] in [i["id"] for i in confident]
    assert all(i["category"]["gender"]["confidence"] >= threshold for i in confident)
    # max_confidence keeps the rest (strictly under): the two bounds split the items between them.
    unsure = client.get("/v1/items", query_string={"gender": gender, "max_confidence": threshold}).json["items"]
    assert sample["id"] not in [i["id"] for i in unsure]
    assert all(i["category"]["gender"]["confidence"] < threshold for i in unsure)
    same_gender = client.get("/v1/items", query_string={"gender": gender, "limit": 500}).json["items"]
    assert sorted(i["id"] for i in confident + unsure) == [i["id"] for i in same_gender]
    # With no task filtered, the bounds read articleType's confidence, as min_confidence does.
    under_all = client.get("/v1/items", query_string={"max_confidence": 1, "limit": 500}).json["items"]
    assert [i["id"] for i in under_all] == [i["id"] for i in everything
                                            if i["category"]["articleType"]["confidence"] < 1]
    colour = sample["colours"][0]["name"]
    assert sample["id"] in [i["id"] for i in client.get("/v1/items", query_string={"colour": colour}).json["items"]]
    same_any_case = client.get("/v1/items", query_string={"articleType": article.upper(), "kind": "product"})
    assert [i["id"] for i in same_any_case.json["items"]] == [i["id"] for i in filtered]


@pytest.mark.parametrize("path", ["/v1/items", "/v1/items/1/similar"])
def test_a_filter_label_the_classifier_does_not_know_is_refused_with_the_nearest(client, path):
    typo = client.get(path, query_string={"articleType": "Tshrits"})
    assert (typo.status_code, typo.json["code"], typo.json["task"]) == (422, "unknown_label", "articleType")
    assert "Tshirts" in typo.json["did_you_mean"] and "did you mean 'Tshirts'" in typo.json["detail"]
    nothing_near = client.get(path, query_string={"gender": "Martian"}).json
    assert (nothing_near["code"], nothing_near["did_you_mean"]) == ("unknown_label", [])


@pytest.mark.parametrize("query", ["limit=0", "limit=x", "min_confidence=2", "cursor=garbage", "kind=shoe",
                                   "max_confidence=-1", "max_confidence=x", "min_confidence=0.8&max_confidence=0.5"])
def test_items_bad_queries(client, query):
    response = client.get(f"/v1/items?{query}")
    assert (response.status_code, response.json["code"]) == (400, "invalid_request")


def test_ops_endpoints(client, image_server):
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json["checks"] == {"database": "ok", "models": "ok"}
    post_url(client, image_server.url("/gone"))
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'http_requests_total{method="GET",route="/readyz",status="200"}' in metrics
    assert 'fetch_failures_total{code="fetch_failed"}' in metrics
    assert "pipeline_stage_seconds_bucket" in metrics
    spec = client.get("/openapi.json").json
    assert spec["openapi"].startswith("3.1") and "/v1/items" in spec["paths"]
    assert "fashion-tagger API" in client.get("/docs").get_data(as_text=True)


def test_request_id_is_echoed(client):
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"


def test_openapi_describes_every_v1_route_and_method(app, client):
    import re

    def shape(path: str) -> str:  # /v1/items/<int:item_id>/similar and /v1/items/{id}/similar alike
        return re.sub(r"<(?:\w+:)?\w+>|\{\w+\}", "{}", path)

    described = {(shape(path), method) for path, methods in client.get("/openapi.json").json["paths"].items()
                 for method in methods}
    served = {(shape(rule.rule), method.lower()) for rule in app.url_map.iter_rules() if rule.rule.startswith("/v1/")
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert ("/v1/images/{}", "delete") in served
    assert served - described == set()


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_a_wide_gamut_phone_photo_is_tagged_and_its_colours_measured_in_srgb(client, fmt):
    # A photo as an iPhone saves it: HEIC (or AVIF) tagged Display P3. The swatch is the colour a
    # colour-managed screen shows, not the file's numbers read as sRGB.
    stored = np.array([40, 150, 90], dtype=np.float64)  # a green the two spaces disagree on
    out = io.BytesIO()
    Image.new("RGB", (96, 128), tuple(int(v) for v in stored)).save(
        out, fmt, quality=95, icc_profile=rgb_profile(DISPLAY_P3_COLORANTS, "Display P3"))
    response = client.post("/v1/analyses", data={"image": (io.BytesIO(out.getvalue()), "photo.heic")},
                           content_type="multipart/form-data")
    assert response.status_code == 201, response.json
    assert (response.json["image"]["width"], response.json["image"]["height"]) == (96, 128)
    swatch = response.json["items"][0]["colours"][0]
    measured = np.array([int(swatch["hex"][i:i + 2], 16) for i in (1, 3, 5)], dtype=np.float64)
    assert swatch["share"] > 0.95
    assert np.abs(measured - display_p3_to_srgb(stored)).max() <= 4  # lossy coding of a flat colour
    assert np.abs(measured - stored).max() > 15


def test_an_analysis_stored_before_colour_profiles_were_applied_is_made_again(client, app, pipeline):
    out = io.BytesIO()
    Image.new("RGB", (96, 128), (40, 150, 90)).save(out, "PNG", icc_profile=rgb_profile(DISPLAY_P3_COLORANTS, "P3"))
    tagged = out.getvalue()

    def post(data: bytes):
        return client.post("/v1/analyses", data={"image": (io.BytesIO(data), "p.png")}, content_type="multipart/form-data")

    first = post(tagged)
    assert first.status_code == 201 and post(tagged).status_code == 200  # stored, then served from storage
    with app.app_context():  # as a version that read the numbers as sRGB stored it
        session = db.session()
        session.get(Analysis, first.json["id"]).bundle_key = pipeline.bundle_key
        session.commit()
    again = post(tagged)
    assert again.status_code == 201 and again.json["id"] != first.json["id"]
    plain = garment_photo((90, 90, 200), seed=4)  # no profile: its stored analysis is as good as ever
    stored = post(plain)
    with app.app_context():
        assert db.session().get(Analysis, stored.json["id"]).bundle_key == pipeline.bundle_key
    assert post(plain).status_code == 200
