"""A fresh database for a benchmark that fills it with bulk rows: SQLite in a temporary folder, or an empty
PostgreSQL database named by the caller, migrated and emptied."""
from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Engine

from app.db import make_engine, upgrade
from app.models import Base


def empty_database(url: str | None, folder: str, name: str) -> Engine:
    """An engine on `url` (default: SQLite file `name` in `folder`), migrated, every table empty."""
    url = url or f"sqlite:///{folder}/{name}.sqlite3"
    upgrade(url)
    engine = make_engine(url)
    if url.startswith("postgresql"):
        with engine.begin() as connection:
            connection.execute(text("TRUNCATE " + ", ".join(t.name for t in reversed(Base.metadata.sorted_tables))
                                    + " RESTART IDENTITY CASCADE"))
    return engine


def move_sequences_past_given_ids(engine: Engine, tables: tuple[str, ...]) -> None:
    """Bulk rows inserted with their ids given leave PostgreSQL's sequences behind: move them past."""
    if engine.dialect.name != "postgresql":
        return
    with engine.begin() as connection:
        for table in tables:
            connection.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"))
