"""messages a customer sends while a handoff waits (`POST /v1/handoffs/{id}/messages`) are stored as
follow-ups: handoff rows naming the handoff they follow, delivered by the same outbox

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""
from alembic import op
import sqlalchemy as sa

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable and without a foreign key, so SQLite adds them in place (no copy of the handoffs table).
    op.add_column("handoffs", sa.Column("follows_id", sa.String(length=40), nullable=True))
    op.add_column("handoffs", sa.Column("follow_up_seq", sa.Integer(), nullable=True))
    # A follow-up's place among its handoff's: two posted at once cannot take the same one.
    op.create_index("ix_handoffs_follows", "handoffs", ["follows_id", "follow_up_seq"], unique=True)


def downgrade() -> None:
    # 0006 knows no follow-ups: left, they would be listed and matched to vendor events as handoffs.
    op.execute("DELETE FROM deliveries WHERE handoff_id IN (SELECT id FROM handoffs WHERE follows_id IS NOT NULL)")
    op.execute("DELETE FROM handoffs WHERE follows_id IS NOT NULL")
    op.drop_index("ix_handoffs_follows", table_name="handoffs")
    # In place (SQLite ≥ 3.35 drops a column itself): a batch copy would drop the handoffs table,
    # and with foreign keys on, that deletes every delivery, assignment and callback with it.
    op.drop_column("handoffs", "follow_up_seq")
    op.drop_column("handoffs", "follows_id")
