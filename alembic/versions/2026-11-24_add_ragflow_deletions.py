"""Add ragflow_deletions: mirrored RAGFlow sessions still to delete, retried until done.

Revision ID: 20261124_0003
Revises: 20261124_0002
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from session_service.db.types import BigIntId, UTCDateTime

revision: str = "20261124_0003"
down_revision: str | None = "20261124_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ragflow_deletions",
        sa.Column("id", BigIntId, autoincrement=True, nullable=False),
        sa.Column("ragflow_session_id", sa.String(64), nullable=False),
        sa.Column("chat_id", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ragflow_deletions")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    op.create_index(
        "ix_ragflow_deletions_next_attempt_at", "ragflow_deletions", ["next_attempt_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_ragflow_deletions_next_attempt_at", table_name="ragflow_deletions")
    op.drop_table("ragflow_deletions")
