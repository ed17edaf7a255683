"""conversation links found by the ticket they name: a vendor's event names a ticket, and its solve
completes the waiting handoffs of the conversations linked to it (a merge moves the links)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_links_ticket", "conversation_links", ["target", "vendor_id"])


def downgrade() -> None:
    op.drop_index("ix_links_ticket", table_name="conversation_links")
