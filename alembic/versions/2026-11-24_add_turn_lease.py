"""Add the turn lease to chat_sessions: one turn at a time per session, across replicas.

Revision ID: 20261124_0002
Revises: 20261124_0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from session_service.db.types import UTCDateTime

revision: str = "20261124_0002"
down_revision: str | None = "20261124_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("chat_sessions") as batch:
        batch.add_column(sa.Column("turn_lock_owner", sa.String(64), nullable=True))
        batch.add_column(sa.Column("turn_lock_expires_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("chat_sessions") as batch:
        batch.drop_column("turn_lock_expires_at")
        batch.drop_column("turn_lock_owner")
