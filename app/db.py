"""Engine and sessions for the app; `flask db upgrade` runs the Alembic migrations."""
from __future__ import annotations

from pathlib import Path

import click
from alembic import command
from alembic.config import Config as AlembicConfig
from flask import Flask, current_app, g
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from .errors import ApiError

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"


def make_engine(url: str, connect_timeout: int = 5) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection, _record):
            cursor = connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        return engine
    # pre_ping: connections broken by a database restart are replaced, so service recovers by itself;
    # connect_timeout and pool_timeout: an unreachable database answers 503 in seconds, not minutes.
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5, pool_timeout=10,
                         connect_args={"connect_timeout": connect_timeout})


def alembic_config(url: str) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def get_or_not_found(db_session: Session, model, key, name: str):
    """The `model` row with primary key `key`, or the API's 404 (`not_found`, "no <name> <key>")."""
    row = db_session.get(model, key)
    if row is None:
        raise ApiError("not_found", f"no {name} {key}")
    return row


def session() -> Session:
    if "db_session" not in g:
        g.db_session = current_app.extensions["sessionmaker"]()
    return g.db_session


def _close_session(_exc=None):
    db_session = g.pop("db_session", None)
    if db_session is not None:
        db_session.close()


def init_app(app: Flask) -> None:
    settings = app.config["SETTINGS"]
    engine = make_engine(settings.database_url, settings.database_connect_timeout)
    app.extensions["engine"] = engine
    app.extensions["sessionmaker"] = sessionmaker(engine, expire_on_commit=False)
    app.teardown_appcontext(_close_session)

    @app.cli.group("db")
    def db_group():
        """Database schema commands."""

    @db_group.command("upgrade")
    @click.option("--revision", default="head")
    def upgrade_command(revision):
        """Apply the Alembic migrations to DATABASE_URL."""
        upgrade(app.config["SETTINGS"].database_url, revision)
        click.echo(f"database at revision {revision}")
