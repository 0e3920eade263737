"""Add search_terms: each message's search terms (words; CJK characters and their pairs)
under its session's owner, keyed for GET /api/search. The messages stored already are
indexed here.

Revision ID: 20261129_0010
Revises: 20261129_0009
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from session_service.db.search_terms import TERM_LENGTH, owner_key, terms

revision: str = "20261129_0010"
down_revision: str | None = "20261129_0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 1000


def upgrade() -> None:
    table = op.create_table(
        "search_terms",
        sa.Column("owner", sa.BigInteger(), nullable=False),
        sa.Column("term", sa.String(TERM_LENGTH), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        # the one index: a user's messages with a term, by message (no foreign key: it would
        # need a second index, by message, as big; a message's rows are found from its text)
        sa.PrimaryKeyConstraint("owner", "term", "message_id", name="pk_search_terms"),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
        sqlite_with_rowid=False,
    )
    _index_stored_messages(table)


def _index_stored_messages(table: sa.Table) -> None:
    bind = op.get_bind()
    query = sa.text(
        "SELECT m.id, m.content, s.user_id FROM chat_messages AS m"
        " JOIN chat_sessions AS s ON s.session_id = m.session_id"
        " WHERE m.id > :after ORDER BY m.id LIMIT :batch"
    )
    after = 0
    while rows := bind.execute(query, {"after": after, "batch": BATCH}).all():
        found = [
            {"message_id": message_id, "term": term, "owner": owner_key(user_id)}
            for message_id, content, user_id in rows
            for term in terms(content)
        ]
        if found:
            bind.execute(table.insert(), found)
        after = rows[-1][0]


def downgrade() -> None:
    op.drop_table("search_terms")
