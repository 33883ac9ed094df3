"""Operator commands: `flask analyse URL_OR_FILE` runs the same path as POST /v1/analyses; `flask images
delete ID...` and `flask images forget URLS_FILE` the same as DELETE /v1/images (by id, by URL)."""
from __future__ import annotations

import json
from pathlib import Path

import click
from flask import Flask


def init_app(app: Flask) -> None:
    @app.cli.command("analyse")
    @click.argument("source")
    @click.option("--refresh", is_flag=True)
    def analyse_command(source: str, refresh: bool):
        """Analyse an image URL or a local file and store the result."""
        from .api import analyse
        from .errors import ApiError
        from .fetch import FetchedImage, fetch

        try:
            if Path(source).is_file():
                fetched = FetchedImage(Path(source).read_bytes(), None)
            else:
                fetched = fetch(source, app.config["SETTINGS"])
            with app.test_request_context():
                body, created = analyse(fetched, refresh, {})
        except ApiError as error:
            raise click.ClickException(f"{error.code}: {error.detail}")
        click.echo(json.dumps({"created": created, **body}, indent=1))

    @app.cli.group("images")
    def images_group():
        """Delete stored images."""

    @images_group.command("delete")
    @click.argument("image_ids", nargs=-1, required=True, type=int)
    def delete_command(image_ids):
        """Delete images by id, with everything stored about them."""
        from . import db
        from .deletion import delete_image

        missing = []
        with app.app_context():
            for image_id in image_ids:
                deleted = delete_image(db.session(), image_id, app.config["SETTINGS"].thumbnail_dir)
                if deleted is None:
                    missing.append(image_id)
                else:
                    click.echo(json.dumps(deleted.json()))
        if missing:
            raise click.ClickException(f"no image {', '.join(map(str, missing))}")

    @images_group.command("forget")
    @click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    def forget_command(source: Path):
        """Forget the URLs in SOURCE (one per line, or a CSV with a url column, as `flask ingest` reads):
        images no other URL refers to are deleted."""
        from tqdm import tqdm

        from . import db
        from .deletion import forget_url
        from .jobs.cli import read_urls

        urls = read_urls(source)
        deleted = kept = unknown = 0
        with app.app_context():
            for url in tqdm(urls, desc="forgetting URLs", unit="url"):
                forgotten = forget_url(db.session(), url, app.config["SETTINGS"].thumbnail_dir)
                if forgotten is None:
                    unknown += 1
                    continue
                deleted += len(forgotten.deleted)
                kept += len(forgotten.kept)
        click.echo(f"{len(urls)} URLs: {deleted} images deleted, {kept} kept (still at other URLs), "
                   f"{unknown} URLs never analysed")
