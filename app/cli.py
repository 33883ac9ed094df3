"""Operator commands: `flask analyse URL_OR_FILE` runs the same path as POST /v1/analyses."""
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
