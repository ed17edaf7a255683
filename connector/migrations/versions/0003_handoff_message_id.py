"""handoffs remember the signed request's webhook-id (replays are answered, never acted on)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""
from alembic import op
import sqlalchemy as sa

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("handoffs") as batch:
        batch.add_column(sa.Column("message_id", sa.String(length=200), nullable=True))
        batch.create_unique_constraint("uq_handoffs_bot_message", ["bot_id", "message_id"])


def downgrade() -> None:
    with op.batch_alter_table("handoffs") as batch:
        batch.drop_constraint("uq_handoffs_bot_message", type_="unique")
        batch.drop_column("message_id")
