"""item_labels: a person's labels for an item (corrections of its tags), and the model's tags they replaced

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 00:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'item_labels',
        sa.Column('item_id', sa.Integer(), sa.ForeignKey('items.id', ondelete='CASCADE'), primary_key=True),
        sa.Column('labels', sa.JSON(), nullable=False),
        sa.Column('model_tags', sa.JSON(), nullable=False),
        sa.Column('revision', sa.Integer(), nullable=False),
        sa.Column('api_key_id', sa.Integer(), sa.ForeignKey('api_keys.id', ondelete='SET NULL'), nullable=True),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
    )


def downgrade():
    # The item columns hold the labels while they stand: put the model's tags back before the table goes.
    connection = op.get_bind()
    labels = sa.table('item_labels', sa.column('item_id', sa.Integer()), sa.column('model_tags', sa.JSON()))
    items = sa.table('items', sa.column('id', sa.Integer()), *(
        sa.column(name, sa.String()) for name in ('gender', 'master_category', 'sub_category', 'article_type',
                                                  'base_colour', 'season', 'usage')), *(
        sa.column(f'{name}_confidence', sa.Float()) for name in ('gender', 'master_category', 'sub_category',
                                                                  'article_type', 'base_colour', 'season', 'usage')))
    for row in connection.execute(sa.select(labels.c.item_id, labels.c.model_tags)).all():
        values = {}
        for task, tag in (row.model_tags or {}).items():
            column = COLUMNS[task]
            values[column] = tag['label']
            values[f'{column}_confidence'] = tag['confidence']
        if values:
            connection.execute(items.update().where(items.c.id == row.item_id).values(**values))
    op.drop_table('item_labels')


# API task name -> the items column of its label (as app.models.TASK_COLUMNS at this revision)
COLUMNS = {'gender': 'gender', 'masterCategory': 'master_category', 'subCategory': 'sub_category',
           'articleType': 'article_type', 'baseColour': 'base_colour', 'season': 'season', 'usage': 'usage'}
