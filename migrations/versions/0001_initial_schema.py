"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22 23:14:33.703496
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('images',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('sha256')
    )
    op.create_table('analyses',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('bundle_key', sa.String(length=200), nullable=False),
    sa.Column('bundles', sa.JSON(), nullable=False),
    sa.Column('timings_ms', sa.JSON(), nullable=False),
    sa.Column('source_url', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('image_id', 'bundle_key', name='uq_analyses_image_bundles'),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('analyses', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_analyses_image_id'), ['image_id'], unique=False)

    op.create_table('image_sources',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('url', 'image_id', name='uq_image_sources_url_image')
    )
    with op.batch_alter_table('image_sources', schema=None) as batch_op:
        batch_op.create_index('ix_image_sources_url_seen', ['url', 'last_seen_at'], unique=False)

    op.create_table('items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('analysis_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('box', sa.JSON(), nullable=True),
    sa.Column('mask', sa.JSON(), nullable=True),
    sa.Column('detector_label', sa.String(length=64), nullable=True),
    sa.Column('detector_score', sa.Float(), nullable=True),
    sa.Column('gender', sa.String(length=32), nullable=False),
    sa.Column('gender_confidence', sa.Float(), nullable=False),
    sa.Column('master_category', sa.String(length=64), nullable=False),
    sa.Column('master_category_confidence', sa.Float(), nullable=False),
    sa.Column('sub_category', sa.String(length=64), nullable=False),
    sa.Column('sub_category_confidence', sa.Float(), nullable=False),
    sa.Column('article_type', sa.String(length=64), nullable=False),
    sa.Column('article_type_confidence', sa.Float(), nullable=False),
    sa.Column('category_path_confidence', sa.Float(), nullable=False),
    sa.Column('base_colour', sa.String(length=64), nullable=False),
    sa.Column('base_colour_confidence', sa.Float(), nullable=False),
    sa.Column('season', sa.String(length=32), nullable=False),
    sa.Column('season_confidence', sa.Float(), nullable=False),
    sa.Column('usage', sa.String(length=32), nullable=False),
    sa.Column('usage_confidence', sa.Float(), nullable=False),
    sa.Column('top3', sa.JSON(), nullable=False),
    sa.Column('colours', sa.JSON(), nullable=False),
    sa.Column('dominant_colour', sa.String(length=32), nullable=True),
    sa.ForeignKeyConstraint(['analysis_id'], ['analyses.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_items_analysis_id'), ['analysis_id'], unique=False)
        batch_op.create_index('ix_items_article', ['article_type', 'id'], unique=False)
        batch_op.create_index('ix_items_colour', ['base_colour', 'id'], unique=False)
        batch_op.create_index('ix_items_dominant_colour', ['dominant_colour', 'id'], unique=False)
        batch_op.create_index('ix_items_master_gender', ['master_category', 'gender', 'id'], unique=False)
        batch_op.create_index('ix_items_sub', ['sub_category', 'id'], unique=False)
        batch_op.create_index('ix_items_usage_season', ['usage', 'season', 'id'], unique=False)



def downgrade():
    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.drop_index('ix_items_usage_season')
        batch_op.drop_index('ix_items_sub')
        batch_op.drop_index('ix_items_master_gender')
        batch_op.drop_index('ix_items_dominant_colour')
        batch_op.drop_index('ix_items_colour')
        batch_op.drop_index('ix_items_article')
        batch_op.drop_index(batch_op.f('ix_items_analysis_id'))

    op.drop_table('items')
    with op.batch_alter_table('image_sources', schema=None) as batch_op:
        batch_op.drop_index('ix_image_sources_url_seen')

    op.drop_table('image_sources')
    with op.batch_alter_table('analyses', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_analyses_image_id'))

    op.drop_table('analyses')
    op.drop_table('images')
