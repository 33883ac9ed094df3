"""API keys; jobs and analyses record the key that made them

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 20:40:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('api_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('rate_limit', sa.String(length=64), nullable=True),
    sa.Column('job_url_quota', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.Column('revoked_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key_hash')
    )
    # SQLite rebuilds the table: keep AUTOINCREMENT (analysis ids are never reused after a refresh).
    with op.batch_alter_table('analyses', schema=None, table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.add_column(sa.Column('api_key_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_analyses_api_key', 'api_keys', ['api_key_id'], ['id'], ondelete='SET NULL')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('api_key_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_jobs_api_key', 'api_keys', ['api_key_id'], ['id'], ondelete='SET NULL')


def downgrade():
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_constraint('fk_jobs_api_key', type_='foreignkey')
        batch_op.drop_column('api_key_id')
    with op.batch_alter_table('analyses', schema=None, table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.drop_constraint('fk_analyses_api_key', type_='foreignkey')
        batch_op.drop_column('api_key_id')
    op.drop_table('api_keys')
