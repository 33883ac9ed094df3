"""images: ids never reused, now that images can be deleted (DELETE /v1/images)

A client keeps the image ids the API returns; after a delete, SQLite's default rowid would hand the largest
deleted id to the next image, and that id (and the catalogue page's cached thumbnail of it) would then
name another image. SQLite gets AUTOINCREMENT on images (the table is rebuilt, rows and ids kept);
PostgreSQL's sequence never reused an id, so nothing changes there.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 00:00:00
"""
from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def _rebuild_images(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != 'sqlite':
        return
    # Alembic's engine runs without PRAGMA foreign_keys, so dropping the old table cascades nothing.
    with op.batch_alter_table('images', recreate='always', table_kwargs={'sqlite_autoincrement': autoincrement}):
        pass


def upgrade():
    _rebuild_images(True)


def downgrade():
    _rebuild_images(False)
