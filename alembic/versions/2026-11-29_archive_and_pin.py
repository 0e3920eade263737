"""Add chat_sessions.archived and pinned: the list leaves archived sessions out (unless asked
for them alone) and shows pinned ones first, by an index in that order.

Revision ID: 20261129_0008
Revises: 20261129_0007
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261129_0008"
down_revision: str | None = "20261129_0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIST = ["user_id", "archived", "pinned", "updated_at", "session_id"]


def upgrade() -> None:
    with op.batch_alter_table("chat_sessions") as batch:
        batch.add_column(
            sa.Column("archived", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("pinned", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.create_index("ix_chat_sessions_user_list", LIST)
        batch.drop_index("ix_chat_sessions_user_updated")


def downgrade() -> None:
    with op.batch_alter_table("chat_sessions") as batch:
        batch.create_index("ix_chat_sessions_user_updated", ["user_id", "updated_at", "session_id"])
        batch.drop_index("ix_chat_sessions_user_list")
        batch.drop_column("pinned")
        batch.drop_column("archived")
