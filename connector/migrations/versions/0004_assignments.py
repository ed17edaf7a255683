"""assignments: who took each handoff and after how long (vendor events; the observed wait);
deliveries found by the vendor's ticket id

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""
from alembic import op
import sqlalchemy as sa

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "assignments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("handoff_id", sa.String(length=40), nullable=False),
        sa.Column("target", sa.String(length=40), nullable=False),
        sa.Column("vendor_ticket_id", sa.String(length=200), nullable=False),
        sa.Column("team", sa.String(length=200), nullable=False),
        sa.Column("agent_id", sa.String(length=200), nullable=False),
        sa.Column("agent_name", sa.String(length=200), nullable=True),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("handed_off_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("wait_seconds", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["handoff_id"], ["handoffs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("handoff_id", name="uq_assignments_handoff"),
        sa.UniqueConstraint("target", "event_id", name="uq_assignments_target_event"),
    )
    with op.batch_alter_table("assignments") as batch:
        batch.create_index("ix_assignments_team_recent", ["team", "assigned_at", "wait_seconds"], unique=False)
    with op.batch_alter_table("deliveries") as batch:
        batch.create_index("ix_deliveries_vendor", ["target", "vendor_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_index("ix_deliveries_vendor")
    with op.batch_alter_table("assignments") as batch:
        batch.drop_index("ix_assignments_team_recent")
    op.drop_table("assignments")
