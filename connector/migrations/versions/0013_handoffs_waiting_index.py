"""the handoffs still waiting for an agent, found by their conversation without reading the solved
ones: every Salesforce Outbound Message asks whether a conversation linked to another case waits
(`merges._waiting_elsewhere`), which read every handoff when none did — 40 ms at 200,000 on
PostgreSQL, 1.5 ms with this index

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

WAITING = "completed_at IS NULL AND follows_id IS NULL"  # `models.WAITING`


def upgrade() -> None:
    op.create_index("ix_handoffs_waiting", "handoffs", ["bot_id", "conversation_id"],
                    postgresql_where=sa.text(WAITING), sqlite_where=sa.text(WAITING))


def downgrade() -> None:
    op.drop_index("ix_handoffs_waiting", table_name="handoffs")
