"""a handoff records when its ticket was solved, whether or not its bot asked for the callback

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable, no default: both databases add it in place. Handoffs solved before it show none
    # (only a bot that asked for `completed` heard of those).
    op.add_column("handoffs", sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    # In place (SQLite ≥ 3.35 drops a column itself): a batch copy would drop the handoffs table,
    # and with foreign keys on, that deletes every delivery, assignment and callback with it.
    op.drop_column("handoffs", "completed_at")
