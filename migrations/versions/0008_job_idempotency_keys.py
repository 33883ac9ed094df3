"""job_idempotency_keys: a client's Idempotency-Key for a job submission, and the job it made

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 00:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'job_idempotency_keys',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('scope', sa.String(64), nullable=False),
        sa.Column('key', sa.String(200), nullable=False),
        sa.Column('fingerprint', sa.String(64), nullable=False),
        sa.Column('job_id', sa.String(32), sa.ForeignKey('jobs.id', ondelete='CASCADE'), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.UniqueConstraint('scope', 'key', name='uq_job_idempotency_keys_scope_key'),
    )


def downgrade():
    op.drop_table('job_idempotency_keys')
