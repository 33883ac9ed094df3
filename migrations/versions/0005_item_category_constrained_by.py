"""items.category_constrained_by: the detector class that constrained an item's category path

Until now the value rode inside the items.top3 JSON under the key 'category_constrained_by' (an additive
field without a schema change). The upgrade moves any such value into the column and removes the key
from top3; the downgrade puts it back, so no value is lost either way. Rows without the key (everything
analysed before the detector prior, and every product item) keep NULL.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 00:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

KEY = 'category_constrained_by'

# The columns the data step touches, as the migration sees them (independent of app.models).
items = sa.table('items', sa.column('id', sa.Integer()), sa.column('top3', sa.JSON()),
                 sa.column('category_constrained_by', sa.String(64)))


def _rows_with_the_key(connection):
    # A text pre-filter (the JSON column is json on PostgreSQL, text on SQLite), the key checked in Python.
    statement = sa.select(items.c.id, items.c.top3).where(sa.cast(items.c.top3, sa.Text).like(f'%{KEY}%'))
    return [(row.id, row.top3) for row in connection.execute(statement)
            if isinstance(row.top3, dict) and KEY in row.top3]


def upgrade():
    # SQLite rebuilds the table when it must: keep AUTOINCREMENT (keyset cursors rely on ids only growing).
    with op.batch_alter_table('items', schema=None, table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.add_column(sa.Column('category_constrained_by', sa.String(length=64), nullable=True))
    connection = op.get_bind()
    for item_id, top3 in _rows_with_the_key(connection):
        top3 = dict(top3)
        value = top3.pop(KEY)
        connection.execute(items.update().where(items.c.id == item_id)
                           .values(top3=top3, category_constrained_by=value or None))


def downgrade():
    connection = op.get_bind()
    statement = sa.select(items.c.id, items.c.top3, items.c.category_constrained_by).where(
        items.c.category_constrained_by.is_not(None))
    for row in connection.execute(statement).all():
        connection.execute(items.update().where(items.c.id == row.id)
                           .values(top3=dict(row.top3 or {}) | {KEY: row.category_constrained_by}))
    with op.batch_alter_table('items', schema=None, table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.drop_column('category_constrained_by')
