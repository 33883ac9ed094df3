"""changes, changes_pruned and change_subscriptions: the changes feed (GET /v1/changes), with an entry
for every analysis stored before it, how far it was pruned, and its webhooks (/v1/subscriptions)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 00:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'changes',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('xid', sa.BigInteger(), nullable=False),
        sa.Column('type', sa.String(32), nullable=False),
        sa.Column('image_id', sa.Integer(), nullable=True),
        sa.Column('analysis_id', sa.Integer(), nullable=True),
        sa.Column('item_id', sa.Integer(), nullable=True),
        sa.Column('detail', sa.JSON(), nullable=True),
        sa.Column('created_at', sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index('ix_changes_xid_id', 'changes', ['xid', 'id'])
    op.create_table(
        'changes_pruned',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('xid', sa.BigInteger(), nullable=False),
        sa.Column('entry_id', sa.Integer(), nullable=False),
        sa.Column('pruned_at', sa.DateTime(), nullable=False),
    )
    op.create_table(
        'change_subscriptions',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('callback_url', sa.Text(), nullable=False),
        sa.Column('types', sa.JSON(), nullable=True),
        sa.Column('cursor', sa.String(200), nullable=False),
        sa.Column('state', sa.String(16), nullable=False),
        sa.Column('failures', sa.Integer(), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('next_attempt_at', sa.DateTime(), nullable=True),
        sa.Column('delivered', sa.Integer(), nullable=False),
        sa.Column('delivered_at', sa.DateTime(), nullable=True),
        sa.Column('lease_owner', sa.String(64), nullable=True),
        sa.Column('lease_until', sa.DateTime(), nullable=True),
        sa.Column('api_key_id', sa.Integer(), sa.ForeignKey('api_keys.id', ondelete='SET NULL'), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sqlite_autoincrement=True,
    )
    # A feed read from its start holds every stored analysis: those made before the feed existed come
    # first, oldest first, as if just stored (with xid 0, ahead of any later transaction's entries).
    op.execute("INSERT INTO changes (xid, type, image_id, analysis_id, detail, created_at) "
               "SELECT 0, 'analysis.created', image_id, id, '{\"replaces\": []}', created_at "
               "FROM analyses ORDER BY id")


def downgrade():
    op.drop_table('change_subscriptions')
    op.drop_table('changes_pruned')
    op.drop_index('ix_changes_xid_id', table_name='changes')
    op.drop_table('changes')
