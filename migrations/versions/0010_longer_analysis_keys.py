"""longer analysis keys: analyses.bundle_key holds up to 1,000 characters

A served classifier names every option that changes its tags (mirror view, neighbour vote, feature
heads), twice (category and style), beside the detector, the prior and the garment crop: 207 characters
with the feature heads, past the 200 the column held (PostgreSQL refused the insert; SQLite does not check).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 00:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def _bundle_key_length(old: int, new: int) -> None:
    # Alembic's engine runs without PRAGMA foreign_keys, so SQLite's table copy cascades nothing.
    with op.batch_alter_table('analyses', table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.alter_column('bundle_key', type_=sa.String(new), existing_type=sa.String(old), existing_nullable=False)


def upgrade():
    _bundle_key_length(200, 1000)


def downgrade():
    # Refused by PostgreSQL while a stored key is longer than 200 characters (nothing is cut).
    _bundle_key_length(1000, 200)
