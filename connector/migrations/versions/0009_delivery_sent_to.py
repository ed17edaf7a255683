"""an attempt whose outcome is unknown records where it went (Slack's channel): the lookup searches there

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable, no default: adding it rewrites nothing on PostgreSQL, and rows from before it
    # simply have no record (their lookup searches where the next attempt would post, as before).
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("sent_to", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("sent_to")
