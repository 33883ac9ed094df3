"""Operator commands: `flask analyse URL_OR_FILE` runs the same path as POST /v1/analyses; `flask images
delete ID...` and `flask images forget URLS_FILE` the same as DELETE /v1/images (by id, by URL); `flask
labels import CSV` the same as PUT /v1/items/<id>/labels for many items (a shop's own product data), and
`flask labels export CSV` writes them out in the form import reads; `flask changes prune
--older-than-days N` deletes old entries of the changes feed."""
from __future__ import annotations

import csv
import json
from collections import Counter
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
        """Delete stored images (or their superseded analyses)."""

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

    @images_group.command("prune-superseded")
    @click.option("--older-than-days", type=click.FloatRange(min=0), required=True,
                  help="delete analyses superseded (by a newer analysis of their image) more than this many days ago")
    @click.option("--dry-run", is_flag=True, help="only count what would be deleted")
    def prune_superseded_command(older_than_days: float, dry_run: bool):
        """Delete the analyses newer model bundles superseded (after `flask retag`, say): nothing lists or
        searches them any more. Images, URLs, thumbnails and current analyses stay."""
        import datetime as dt

        from tqdm import tqdm

        from . import db
        from .deletion import delete_superseded, find_superseded

        with app.app_context():
            session = db.session()
            found = find_superseded(session, dt.timedelta(days=older_than_days))
            if not dry_run and found.ids:
                with tqdm(total=len(found.ids), desc="deleting superseded analyses", unit="analysis") as bar:
                    delete_superseded(session, found, progress=bar.update)
        verb = "would delete" if dry_run else "deleted"
        click.echo(f"{verb} {len(found.ids)} superseded analyses ({found.items} items) of {found.images} images")

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

    @app.cli.group("labels")
    def labels_group():
        """People's labels for stored items."""

    @labels_group.command("import")
    @click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    def import_labels_command(source: Path):
        """Label items from a CSV: an item_id column, or a url column (the whole-image item of the URL's
        latest analysis), and a column per task to label (gender, masterCategory, subCategory,
        articleType, baseColour, season, usage; empty cells say nothing). One transaction per row; rows
        that fail are counted by error code and the first few shown."""
        from tqdm import tqdm

        from . import db
        from .api import label_item_with
        from .errors import ApiError
        from .labels import TASKS
        from .store import latest_for_url

        with source.open(encoding="utf-8-sig", newline="") as handle:
            rows = list(csv.DictReader(handle))
        columns = {name.strip(): name for name in (rows[0].keys() if rows else ())}
        key = next((c for c in ("item_id", "url", "image_url") if c in columns), None)
        if key is None:
            raise click.ClickException(f"{source}: no item_id or url column")
        labelled, failed, shown = 0, Counter(), []
        with app.test_request_context():
            app.extensions["pipeline"].load(notify=False)  # the serving classifier's labels check each row
            for line, row in enumerate(tqdm(rows, desc="labelling items", unit="row"), start=2):
                given = {task: row[columns[task]].strip() for task in TASKS
                         if task in columns and (row[columns[task]] or "").strip()}
                try:
                    item_id = _item_of(db.session(), key, (row[columns[key]] or "").strip(), latest_for_url)
                    label_item_with(item_id, given)
                    labelled += 1
                except ApiError as error:
                    db.session().rollback()
                    failed[error.code] += 1
                    if len(shown) < 5:
                        shown.append(f"line {line}: {error.code}: {error.detail}")
        click.echo(f"{len(rows)} rows: {labelled} items labelled"
                   + "".join(f", {count} {code}" for code, count in failed.most_common()))
        for message in shown:
            click.echo(f"  {message}")


    @labels_group.command("export")
    @click.argument("target", type=click.Path(dir_okay=False, writable=True, path_type=Path))
    def export_labels_command(target: Path):
        """Write every labelled item to a CSV (item_id, url, sha256, kind, position, a column per task,
        updated_at) that `flask labels import` reads back: by item_id into this database, or, without
        that column, by url (whole-image items) into another."""
        from sqlalchemy import select

        from . import db
        from .labels import TASKS
        from .models import Analysis, ImageRecord, Item, ItemLabels, iso_utc

        with app.app_context():
            rows = db.session().execute(
                select(Item.id, Analysis.source_url, ImageRecord.sha256, Item.kind, Item.position, ItemLabels.labels,
                       ItemLabels.updated_at)
                .join(ItemLabels, ItemLabels.item_id == Item.id).join(Analysis).join(ImageRecord)
                .order_by(Item.id)).all()
        with target.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["item_id", "url", "sha256", "kind", "position", *TASKS, "updated_at"])
            for item_id, url, sha256, kind, position, labels, updated_at in rows:
                writer.writerow([item_id, url or "", sha256, kind, position, *(labels.get(task, "") for task in TASKS),
                                 iso_utc(updated_at)])
        click.echo(f"{len(rows)} labelled items written to {target}")

    @app.cli.group("changes")
    def changes_group():
        """The changes feed (GET /v1/changes)."""

    @changes_group.command("prune")
    @click.option("--older-than-days", type=click.FloatRange(min=0), required=True,
                  help="delete the entries made more than this many days ago")
    def prune_changes_command(older_than_days: float):
        """Delete old feed entries, never one a subscription has yet to deliver. A client whose cursor
        is at or before the last deleted entry gets 410 cursor_expired and copies again."""
        import datetime as dt

        from . import db
        from .changes import prune
        from .models import utcnow

        with app.app_context():
            pruned = prune(db.session(), utcnow() - dt.timedelta(days=older_than_days))
        click.echo(f"{pruned.deleted} entries deleted; the feed now starts after {pruned.through or 'its first entry'}")
        if pruned.held_back_by is not None:
            click.echo(f"held back by subscription {pruned.held_back_by}, which has not delivered older entries yet")


def _item_of(session, key: str, value: str, latest_for_url) -> int:
    """The item a CSV row names: by id, or the whole-image item of its URL's latest analysis."""
    from .errors import ApiError

    if key == "item_id":
        if not value.isdigit():
            raise ApiError("invalid_request", f"item_id {value!r} is not a number")
        return int(value)
    analysis = latest_for_url(session, value) if value else None
    if analysis is None:
        raise ApiError("not_found", f"{value!r} has not been analysed")
    return analysis.items[0].id
