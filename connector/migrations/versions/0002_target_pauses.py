"""target pauses (a 429 pauses the target for every worker); retry windows restartable by replay

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""
from alembic import op
import sqlalchemy as sa

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "target_pauses",
        sa.Column("target", sa.String(length=40), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("target"),
    )
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("window_started_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE deliveries SET window_started_at = created_at")
    with op.batch_alter_table("deliveries") as batch:
        batch.alter_column("window_started_at", existing_type=sa.DateTime(timezone=True), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("window_started_at")
    op.drop_table("target_pauses")
