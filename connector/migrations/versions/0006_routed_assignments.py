"""assignments made by routing itself (the agent routing put on the ticket, as the vendor reports
it) are recorded too, marked `routed`: shown to the bot, never an observed wait

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""
from alembic import op
import sqlalchemy as sa

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("assignments") as batch:
        batch.add_column(sa.Column("routed", sa.Boolean(), server_default=sa.false(), nullable=False))
        # The observed wait reads (team, not routed, recent assigned_at) → wait_seconds from the index alone.
        batch.drop_index("ix_assignments_team_recent")
        batch.create_index("ix_assignments_team_recent", ["team", "routed", "assigned_at", "wait_seconds"],
                           unique=False)


def downgrade() -> None:
    # 0005 never stored these: left, they would count as observed waits and block real takers.
    op.execute("DELETE FROM assignments WHERE routed")
    with op.batch_alter_table("assignments") as batch:
        batch.drop_index("ix_assignments_team_recent")
        batch.create_index("ix_assignments_team_recent", ["team", "assigned_at", "wait_seconds"], unique=False)
        batch.drop_column("routed")
