"""Catalogue page first render with 1,000 stored items, measured in the server and in headless Chromium.

    nice -n 15 .venv/bin/python bench/similarity_catalogue_page.py [--items 1000] [--screenshots docs]

Fills a fresh SQLite database with `--items` analyses of catalogue thumbnails from the classifier's
held-out test split (fashion-product-images-small), tagged and embedded by the serving classifier in
batches (the whole-image item only: the detector is not run, it finds nothing on 60x80 product shots
and would only slow the fill), stored through the service's own save_analysis with thumbnails. Then:
- server: time to render GET /catalogue (the grid, first page) and an analysis' detail page (with its
  12 similar items from the index) through Flask's test client, median of `--repeats`;
- browser: headless Chromium (Debian's package) against the app on a local HTTP server, from
  navigation start until the page has loaded and every image in the first screenful (1280x900) has
  arrived and decoded (thumbnails further down load lazily as one scrolls), fresh browser context each
  time (no cache), median of `--repeats`.
The first request of a process also builds the similarity index; it is reported on its own.
Writes bench/results/similarity-catalogue-page-<time>.json (and screenshots with --screenshots DIR).
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402,F401  (before TensorFlow)
import torchvision  # noqa: E402,F401
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from tqdm import tqdm  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

from app import create_app, db, thumbnails  # noqa: E402
from app.config import Settings  # noqa: E402
from app.db import upgrade  # noqa: E402
from app.pipeline import CATEGORY, STYLE  # noqa: E402
from app.colours import dominant_colours  # noqa: E402
from app.store import save_analysis  # noqa: E402
from bench.results import write_report  # noqa: E402
from classification.catalogue import read_catalogue  # noqa: E402

CATALOGUE = ROOT.parent / "shared" / "datasets" / "fashion-product-images-small"
# Milliseconds since navigation start when every image in the first screenful has loaded and decoded.
FIRST_SCREEN_LOADED = """async () => {
  const visible = [...document.images].filter(i => i.getBoundingClientRect().top < innerHeight);
  await Promise.all(visible.map(i => i.decode().catch(() => null)));
  return performance.now();
}"""


def fill(app, count: int, batch: int = 64) -> None:
    pipeline = app.extensions["pipeline"].load(notify=False)
    settings = app.config["SETTINGS"]
    records = {r.id: r for r in read_catalogue(CATALOGUE).records}
    split = json.loads((settings.classifier_bundle / "split.json").read_text())
    chosen = [records[i] for i in split["test"] if i in records][:count]
    with app.app_context():
        session = db.session()
        for start in tqdm(range(0, len(chosen), batch), desc="tagging and storing", unit="batch"):
            part = chosen[start:start + batch]
            images = [np.asarray(Image.open(r.image_path).convert("RGB")) for r in part]
            tags, embeddings = pipeline.classifier.predict_with_embeddings(images)
            for record, image, tag, embedding in zip(part, images, tags, embeddings):
                item = {"position": 0, "kind": "product", "box": None, "mask": None, "detector": None,
                        "category": {t: tag[t] for t in CATEGORY} | {"path_confidence": tag["category_path_confidence"]},
                        "style": {t: tag[t] for t in STYLE}, "colours": dominant_colours(image, None), "embedding": embedding}
                sha = __import__("hashlib").sha256(record.image_path.read_bytes()).hexdigest()
                save_analysis(session, sha256=sha, width=image.shape[1], height=image.shape[0],
                              url=f"https://shop.example.com/images/{record.id}.jpg", bundle_key=pipeline.bundle_key,
                              bundles=pipeline.bundles, timings={}, items=[item], refresh=False,
                              embedding_model=pipeline.embedding_model,
                              thumbnail=thumbnails.make(image, settings.thumbnail_max_side, settings.thumbnail_quality),
                              thumbnail_dir=settings.thumbnail_dir)


def median_ms(function, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 1), [round(t, 1) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--screenshots", type=Path, help="save the grid and a detail page here")
    args = parser.parse_args()

    database = Path(tempfile.mkdtemp()) / "page.sqlite3"
    upgrade(f"sqlite:///{database}")
    settings = Settings.from_env().replace(database_url=f"sqlite:///{database}", secret_key="bench", log_level="WARNING")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app = create_app(settings)
    started = time.perf_counter()
    fill(app, args.items)
    report = {"items": args.items, "fill_s": round(time.perf_counter() - started, 1),
              "page_size": settings.catalogue_page_size, "database": "sqlite"}
    client = app.test_client()
    first_id = client.get("/v1/items?limit=1").json["items"][0]["analysis_id"]
    detail_url = f"/catalogue/analyses/{first_id + 7}"

    def get(url):
        response = client.get(url)
        assert response.status_code == 200, response.status_code

    report["server_first_detail_with_index_build_ms"] = median_ms(lambda: get(detail_url), 1)[0]
    report["server_grid_ms"], _ = median_ms(lambda: get("/catalogue"), args.repeats)
    report["server_grid_filtered_ms"], _ = median_ms(lambda: get("/catalogue?masterCategory=Apparel&gender=Women"), args.repeats)
    report["server_detail_ms"], _ = median_ms(lambda: get(detail_url), args.repeats)

    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=["--disable-background-networking"])

        def load(url: str, screenshot: Path | None = None) -> float:
            context = browser.new_context(viewport={"width": 1280, "height": 900})  # empty cache each time
            page = context.new_page()
            page.goto(base + url, wait_until="load")
            ms = page.evaluate(FIRST_SCREEN_LOADED)
            images = page.evaluate("[...document.images].filter(i => i.complete && i.naturalWidth > 0).length")
            assert images > 0, url
            if screenshot:
                page.screenshot(path=str(screenshot), full_page=False)
            context.close()
            return ms

        for name, url in (("browser_grid_load_ms", "/catalogue"), ("browser_detail_load_ms", detail_url)):
            times = [load(url) for _ in range(args.repeats)]
            report[name] = round(statistics.median(times), 1)
            report[name.replace("_ms", "_p90_ms")] = round(float(np.percentile(times, 90)), 1)
        if args.screenshots:
            args.screenshots.mkdir(parents=True, exist_ok=True)
            load("/catalogue", args.screenshots / "catalogue-grid.png")
            load(detail_url, args.screenshots / "catalogue-detail.png")
        browser.close()
    server.shutdown()
    print(json.dumps(report, indent=1))
    write_report("similarity-catalogue-page", report)


if __name__ == "__main__":
    main()
