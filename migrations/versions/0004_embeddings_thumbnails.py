"""Item embeddings (similarity search) and image thumbnails (catalogue page, embedding backfill)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 00:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('item_embeddings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=False),
    sa.Column('vector', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['item_id'], ['items.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('item_id', 'model', name='uq_item_embeddings_item_model'),
    sqlite_autoincrement=True
    )
    op.create_index('ix_item_embeddings_model_id', 'item_embeddings', ['model', 'id'], unique=False)
    op.create_table('thumbnails',
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=True),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('image_id')
    )


def downgrade():
    op.drop_table('thumbnails')
    op.drop_index('ix_item_embeddings_model_id', table_name='item_embeddings')
    op.drop_table('item_embeddings')
