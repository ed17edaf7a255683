"""a delivery counts the attempts a vendor turned away with a rate limit: not counted against CONNECTOR_MAX_ATTEMPTS

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A constant default: PostgreSQL adds it without rewriting the table; SQLite adds the column in
    # place. Rows from before it count every attempt against the limit, as they did.
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("rate_limited", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("rate_limited")
