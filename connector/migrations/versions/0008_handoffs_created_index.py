"""handoffs are read oldest first by creation time to forget the old ones (`retention`)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Without it each hourly look for handoffs past CONNECTOR_RETENTION_DAYS reads the whole table.
    op.create_index("ix_handoffs_created", "handoffs", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_handoffs_created", table_name="handoffs")
