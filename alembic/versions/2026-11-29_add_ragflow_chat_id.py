"""Add chat_sessions.ragflow_chat_id: the RAGFlow chat a session's mirror belongs to, so it is
renamed and deleted under that chat after RAGFLOW_CHAT_ID changes (NULL: made before this
column, taken to be the configured chat's).

Revision ID: 20261129_0006
Revises: 20261124_0005
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20261129_0006"
down_revision: str | None = "20261124_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("chat_sessions") as batch:
        batch.add_column(sa.Column("ragflow_chat_id", sa.String(64), nullable=True))
        # The start-up backfill looks for mirrors without a chat: by index, not a table scan.
        batch.create_index("ix_chat_sessions_ragflow_chat_id", ["ragflow_chat_id"])


def downgrade() -> None:
    with op.batch_alter_table("chat_sessions") as batch:
        batch.drop_index("ix_chat_sessions_ragflow_chat_id")
        batch.drop_column("ragflow_chat_id")
