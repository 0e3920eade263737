"""Add chat_sessions.generating_message_id: the reply in progress, found again after a crash.

Revision ID: 20261124_0004
Revises: 20261124_0003
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261124_0004"
down_revision: str | None = "20261124_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("chat_sessions") as batch:
        batch.add_column(sa.Column("generating_message_id", sa.BigInteger(), nullable=True))
        batch.create_index("ix_chat_sessions_generating_message_id", ["generating_message_id"])


def downgrade() -> None:
    with op.batch_alter_table("chat_sessions") as batch:
        batch.drop_index("ix_chat_sessions_generating_message_id")
        batch.drop_column("generating_message_id")
