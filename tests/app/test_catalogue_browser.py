"""The catalogue page in a real browser: headless Chromium (Debian's package, driven by Playwright)
signs in with an API key, filters the grid, opens an item, sees its boxes and masks, uploads a
photo, corrects its tags and deletes it again. Saves screenshots (the pytest tmp dir; also CATALOGUE_SCREENSHOT_DIR when set).

Skipped only when no Chromium executable exists: CI (.ci/run) installs it."""
from __future__ import annotations

import io
import os
import re
import shutil
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from app import create_app

from .servers import garment_photo, held_out_street_photo
from .test_auth import new_key

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason=f"no Chromium executable at {CHROMIUM} "
                                "(apt-get install chromium; CI installs it)")
# Nothing but this machine: no update checks, sync, translation or other background traffic.
QUIET = ["--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-default-apps", "--disable-domain-reliability", "--disable-features=Translate,OptimizationHints,MediaRouter"]


@pytest.fixture
def served(settings, pipeline):
    """The app with API keys required, on a real HTTP server on 127.0.0.1, holding a held-out street
    photo and two product photos."""
    app = create_app(settings.replace(api_keys_required=True, secret_key="browser-test"))
    app.extensions["pipeline"].set(pipeline)
    _, key = new_key(app)
    client = app.test_client()
    photo = held_out_street_photo(pipeline)
    for data in (photo.read_bytes(), garment_photo((200, 30, 40)), garment_photo((30, 60, 200), seed=1)):
        response = client.post("/v1/analyses", headers={"Authorization": f"Bearer {key}"},
                               data={"image": (io.BytesIO(data), "p.jpg")}, content_type="multipart/form-data")
        assert response.status_code == 201, response.json
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", key
    server.shutdown()
    app.extensions["engine"].dispose()


def save(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("CATALOGUE_SCREENSHOT_DIR"):
        Path(os.environ["CATALOGUE_SCREENSHOT_DIR"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(os.environ["CATALOGUE_SCREENSHOT_DIR"]) / name)
    assert path.stat().st_size > 10_000
    return path


def test_catalogue_in_headless_chromium(served, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    base, key = served
    upload = tmp_path / "upload.jpg"
    upload.write_bytes(garment_photo((20, 140, 60), seed=4))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=QUIET)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        outside = []
        page.on("request", lambda request: None if request.url.startswith(base) else outside.append(request.url))
        try:
            # Keys are required: the page asks for one, then keeps only a session cookie.
            page.goto(f"{base}/catalogue")
            expect(page).to_have_url(re.compile(r"/catalogue/login"))
            page.fill("input[name=api_key]", key)
            page.click("button[type=submit]")
            expect(page).to_have_url(re.compile(r"/catalogue$"))
            assert key not in page.content()
            cards = page.locator("#items .card")
            assert cards.count() >= 3

            # Filter: garments only.
            page.select_option("select[name=kind]", "garment")
            page.click("form.filters button[type=submit]")
            expect(page).to_have_url(re.compile(r"kind=garment"))
            garments = page.locator("#items .card")
            assert garments.count() >= 1
            assert all("garment" in text for text in garments.all_inner_texts())

            # Open one: the analysed image with boxes and masks over it, tags, colours, similar items.
            garments.first.click()
            expect(page).to_have_url(re.compile(r"/catalogue/analyses/\d+\?item=\d+"))
            boxes = page.locator("#overlay rect.box")
            assert boxes.count() >= 1
            expect(boxes.first).to_be_visible()
            assert page.locator("#overlay image.mask").count() == boxes.count()
            page.wait_for_function("document.getElementById('analysed-image').complete && "
                                   "document.getElementById('analysed-image').naturalWidth > 0")
            box = boxes.first.bounding_box()
            image = page.locator("#analysed-image").bounding_box()
            assert box["width"] > 5 and image["x"] <= box["x"] and box["x"] + box["width"] <= image["x"] + image["width"] + 1
            assert page.locator(".item.selected table.tags tr").count() == 7
            assert page.locator("#similar .card").count() >= 1
            save(page, tmp_path, "catalogue-detail.png")

            # Upload a photo: analysed, stored, shown.
            page.goto(f"{base}/catalogue")
            save(page, tmp_path, "catalogue-grid.png")
            page.set_input_files("input[type=file][name=image]", str(upload))
            page.click("form.upload button[type=submit]")
            expect(page).to_have_url(re.compile(r"/catalogue/analyses/\d+$"), timeout=60_000)
            expect(page.locator("text=uploaded")).to_be_visible()
            assert page.locator(".items .item").count() >= 1
            uploaded = page.url

            # Correct its tags: the form saves labels, which the page then shows as labelled, with the model's.
            page.click("#correct-tags summary")
            page.select_option("#correct-tags select[name=articleType]", "Jeans")
            page.click("#save-labels")
            expect(page.locator(".notice")).to_contain_text("articleType Jeans")
            labelled = page.locator(".item.selected tr.labelled")
            assert labelled.count() == 3  # articleType and the subCategory and masterCategory it implies
            expect(labelled.first).to_contain_text("labelled")
            save(page, tmp_path, "catalogue-labels.png")
            page.click("#withdraw-labels")
            expect(page.locator(".notice")).to_contain_text("labels withdrawn")
            assert page.locator(".item.selected tr.labelled").count() == 0

            # Delete it again, through the confirmation page: Cancel goes back, Delete removes it.
            page.click("#delete-image")
            expect(page.locator("h2")).to_contain_text("Delete image")
            page.click("#cancel-delete")
            expect(page).to_have_url(uploaded)
            page.click("#delete-image")
            page.click("#confirm-delete")
            expect(page).to_have_url(re.compile(r"/catalogue$"))
            expect(page.locator(".notice")).to_contain_text("Deleted image")
            assert page.goto(uploaded).status == 404
        finally:
            browser.close()
    assert outside == []  # the page loads nothing from anywhere else
