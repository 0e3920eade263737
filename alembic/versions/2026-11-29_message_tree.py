"""The conversation as a tree: chat_messages.parent_id, chat_sessions.active_message_id (the
active leaf) and stop_message_id (a reply asked to stop), and message_feedback.

Every existing session becomes a single branch: each message's parent is the one before it,
and the active leaf is its last message.

parent_id has no foreign key on purpose: InnoDB cascades at most 15 levels deep, so deleting a
session (whose messages go by its own foreign key) must not cascade along branches.

Revision ID: 20261129_0007
Revises: 20261129_0006
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from session_service.db.types import UTCDateTime

revision: str = "20261129_0007"
down_revision: str | None = "20261129_0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("chat_messages") as batch:
        batch.add_column(sa.Column("parent_id", sa.BigInteger(), nullable=True))
        # A message's children (siblings, regenerations): by parent within the session.
        batch.create_index("ix_chat_messages_session_parent", ["session_id", "parent_id", "id"])
    with op.batch_alter_table("chat_sessions") as batch:
        batch.add_column(sa.Column("active_message_id", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("stop_message_id", sa.BigInteger(), nullable=True))
        # Replicas look for replies asked to stop: a few rows, found by index.
        batch.create_index("ix_chat_sessions_stop_message_id", ["stop_message_id"])
    op.create_table(
        "message_feedback",
        sa.Column(
            "message_id",
            sa.BigInteger(),
            sa.ForeignKey(
                "chat_messages.id",
                ondelete="CASCADE",
                name="fk_message_feedback_message_id_chat_messages",
            ),
            primary_key=True,
        ),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("rating", sa.String(8), nullable=False),
        sa.Column("comment", sa.String(2000), nullable=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("message_id", name="pk_message_feedback"),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    op.create_index("ix_message_feedback_at", "message_feedback", ["at", "message_id"])
    op.create_index("ix_message_feedback_user", "message_feedback", ["user_id", "at", "message_id"])
    op.create_index(
        "ix_message_feedback_rating", "message_feedback", ["rating", "at", "message_id"]
    )
    _one_branch_per_session()


def _one_branch_per_session() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "UPDATE chat_messages SET parent_id = ("
            " SELECT p.id FROM chat_messages AS p"
            " WHERE p.session_id = chat_messages.session_id AND p.seq < chat_messages.seq"
            " ORDER BY p.seq DESC LIMIT 1)"
        )
    else:  # MySQL refuses a subquery on the table it updates: join a derived table instead
        op.execute(
            "UPDATE chat_messages AS m JOIN ("
            " SELECT id, LAG(id) OVER (PARTITION BY session_id ORDER BY seq) AS previous"
            " FROM chat_messages) AS x ON x.id = m.id"
            " SET m.parent_id = x.previous"
        )
    op.execute(
        "UPDATE chat_sessions SET active_message_id = ("
        " SELECT m.id FROM chat_messages AS m WHERE m.session_id = chat_sessions.session_id"
        " ORDER BY m.seq DESC LIMIT 1)"
    )


def downgrade() -> None:
    op.drop_table("message_feedback")
    with op.batch_alter_table("chat_sessions") as batch:
        batch.drop_index("ix_chat_sessions_stop_message_id")
        batch.drop_column("stop_message_id")
        batch.drop_column("active_message_id")
    with op.batch_alter_table("chat_messages") as batch:
        batch.drop_index("ix_chat_messages_session_parent")
        batch.drop_column("parent_id")
