"""The tables: a session row per chat; a message row per message, each the child of the one
before it on its branch (`parent_id`), numbered in the order they were made (`seq`)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ForeignKey,
    Index,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    false,
    true,
)
from sqlmodel import Field, SQLModel

from session_service.db.search_terms import TERM_LENGTH
from session_service.db.types import BigIntId, LongText, UTCDateTime, utcnow

# Named constraints, so migrations can refer to them on every backend.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata: MetaData = SQLModel.metadata

SESSION_ID_LENGTH = 64
SESSION_ID_PATTERN = rf"^[A-Za-z0-9_-]{{1,{SESSION_ID_LENGTH}}}$"
USER_ID_LENGTH = 255
TITLE_LENGTH = 500
# A user's list: archived or not, pinned first, then most recently updated.
LIST_ORDER = ("user_id", "archived", "pinned", "updated_at", "session_id")
FEEDBACK_COMMENT_LENGTH = 2000


class MessageStatus(StrEnum):
    """`metadata.status` of an assistant message; a reply stored whole has none."""

    STREAMING = "streaming"  # being generated: its turn stores it (or recovery marks it)
    INTERRUPTED = "interrupted"  # what was generated before a failure, or nothing
    STOPPED = "stopped"  # what was generated before someone stopped it, or nothing


class Rating(StrEnum):
    UP = "up"
    DOWN = "down"


class ChatSession(SQLModel, table=True):
    __tablename__ = "chat_sessions"
    __table_args__ = (
        # "my sessions (archived or not), pinned first, then most recently updated", with
        # session_id as the tie-break
        Index(
            "ix_chat_sessions_user_list",
            "user_id",
            "archived",
            "pinned",
            "updated_at",
            "session_id",
        ),
        {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"},
    )

    session_id: str = Field(primary_key=True, max_length=SESSION_ID_LENGTH)
    user_id: str = Field(max_length=USER_ID_LENGTH)
    title: str = Field(max_length=TITLE_LENGTH)
    # False while a session created without a title waits for an automatic one (chat.titles)
    titled: bool = Field(default=True, sa_column_kwargs={"server_default": true()})
    context: dict[str, Any] = Field(default_factory=dict, sa_type=JSON, nullable=False)
    ragflow_session_id: str | None = Field(default=None, max_length=64)
    # The RAGFlow chat that mirror belongs to (None: made before it was recorded).
    ragflow_chat_id: str | None = Field(default=None, max_length=64, index=True)
    message_count: int = Field(default=0)  # every message of every branch
    archived: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    pinned: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    # The active branch's leaf: what GET shows and the next turn answers (None: no messages).
    active_message_id: int | None = Field(default=None, sa_type=BigInteger)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    # The turn lease (db/turn_lock.py): who runs a turn on this session, and until when.
    turn_lock_owner: str | None = Field(default=None, max_length=64)
    turn_lock_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The assistant message being generated, if any: set with its placeholder row, cleared
    # when it is stored whole; one left set by a dead replica is marked interrupted.
    generating_message_id: int | None = Field(default=None, sa_type=BigInteger, index=True)
    # A reply asked to stop (its generating_message_id): the replica generating it stops it.
    stop_message_id: int | None = Field(default=None, sa_type=BigInteger, index=True)


class ChatMessage(SQLModel, table=True):
    __tablename__ = "chat_messages"
    __table_args__ = (
        # order within a session never depends on timestamps; this also serves paging
        UniqueConstraint("session_id", "seq", name="uq_chat_messages_session_seq"),
        UniqueConstraint(
            "session_id", "client_message_id", name="uq_chat_messages_session_client_message_id"
        ),
        # a message's children: its alternatives (siblings) and the branches below it
        Index("ix_chat_messages_session_parent", "session_id", "parent_id", "id"),
        {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"},
    )

    id: int | None = Field(default=None, sa_column=Column(BigIntId, primary_key=True))
    session_id: str = Field(
        sa_column=Column(
            String(SESSION_ID_LENGTH),
            ForeignKey("chat_sessions.session_id", ondelete="CASCADE"),
            nullable=False,
        )
    )
    seq: int = Field(sa_type=BigInteger, nullable=False)
    # The message before it on its branch (None: a first message). No foreign key: a session's
    # deletion must not cascade along branches (InnoDB stops at 15 levels).
    parent_id: int | None = Field(default=None, sa_type=BigInteger)
    role: str = Field(max_length=50)
    content: str = Field(sa_type=LongText, nullable=False)
    timestamp: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    client_message_id: str | None = Field(default=None, max_length=64)
    # `metadata` is taken by SQLAlchemy's declarative base, so the attribute is `meta`.
    meta: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column("metadata", JSON, nullable=False)
    )


class MessageFeedback(SQLModel, table=True):
    """A rating of an assistant message by its session's owner: one per message."""

    __tablename__ = "message_feedback"
    __table_args__ = (
        Index("ix_message_feedback_at", "at", "message_id"),
        Index("ix_message_feedback_user", "user_id", "at", "message_id"),
        Index("ix_message_feedback_rating", "rating", "at", "message_id"),
        {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"},
    )

    message_id: int = Field(
        sa_column=Column(
            BigInteger,
            ForeignKey("chat_messages.id", ondelete="CASCADE"),
            primary_key=True,
        )
    )
    session_id: str = Field(max_length=SESSION_ID_LENGTH)
    user_id: str = Field(max_length=USER_ID_LENGTH)
    rating: str = Field(max_length=8)
    comment: str | None = Field(default=None, max_length=FEEDBACK_COMMENT_LENGTH)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class SearchTerm(SQLModel, table=True):
    """A message has each of its search terms (db/search_terms.py) once, under its session's
    owner: written in the transaction that stores its text, deleted in the one that deletes
    it. The key is the one index: "this user's messages with this term, newest first". (No
    foreign key: it would need a second index, by message, as big as the first; a message's
    rows are found from its text instead.)"""

    __tablename__ = "search_terms"
    __table_args__ = (
        {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin", "sqlite_with_rowid": False},
    )

    owner: int = Field(sa_type=BigInteger, primary_key=True)  # search_terms.owner_key(user_id)
    term: str = Field(primary_key=True, max_length=TERM_LENGTH)
    message_id: int = Field(sa_type=BigInteger, primary_key=True)


class RagflowDeletion(SQLModel, table=True):
    """A mirrored RAGFlow session still to delete: written with the session's deletion, in
    the same transaction, and removed once RAGFlow confirms (so none is left orphaned)."""

    __tablename__ = "ragflow_deletions"
    __table_args__ = (
        Index("ix_ragflow_deletions_next_attempt_at", "next_attempt_at"),
        {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"},
    )

    id: int | None = Field(default=None, sa_column=Column(BigIntId, primary_key=True))
    ragflow_session_id: str = Field(max_length=64)
    chat_id: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    attempts: int = Field(default=0)
    last_error: str | None = Field(default=None, max_length=500)


class AuditEvent(SQLModel, table=True):
    """Who did what to which session, written in the transaction of the change itself.
    No foreign key: a deleted session's events stay."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_session", "session_id", "id"),
        Index("ix_audit_events_user", "user_id", "id"),
        {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"},
    )

    id: int | None = Field(default=None, sa_column=Column(BigIntId, primary_key=True))
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    actor: str = Field(max_length=USER_ID_LENGTH)
    action: str = Field(max_length=64)
    session_id: str | None = Field(default=None, max_length=SESSION_ID_LENGTH)
    user_id: str | None = Field(default=None, max_length=USER_ID_LENGTH)  # the session's owner
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=JSON, nullable=False)


# The tables themselves, for the statements on a turn's path: Core statements on them skip the
# ORM's bookkeeping (identity map, unit of work, bulk-update evaluation).
SESSIONS: Table = ChatSession.__table__  # type: ignore[attr-defined]
MESSAGES: Table = ChatMessage.__table__  # type: ignore[attr-defined]
FEEDBACK: Table = MessageFeedback.__table__  # type: ignore[attr-defined]
SEARCH_TERMS: Table = SearchTerm.__table__  # type: ignore[attr-defined]
