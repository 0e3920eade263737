"""The SQL of sessions and messages. Repositories flush but never commit: the caller owns the
transaction. (Other statements sit beside the code that owns them: the turn lock's in
turn_lock.py, the audit log's in audit_log.py, pending RAGFlow deletions' in
ragflow_deletions.py, backups' in backup.py.)"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self

from sqlalchemy import and_, bindparam, delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import flag_modified
from sqlmodel import col

from session_service.db.models import (
    MESSAGES,
    SESSIONS,
    ChatMessage,
    ChatSession,
)
from session_service.db.types import utcnow

# The statements every turn runs, built once with bound parameters: building a statement
# costs SQLAlchemy about as much CPU as running it.
_COUNT_MESSAGES = (
    update(SESSIONS)
    .where(SESSIONS.c.session_id == bindparam("key"))
    .values(
        message_count=SESSIONS.c.message_count + bindparam("added"),
        updated_at=bindparam("at", type_=SESSIONS.c.updated_at.type),
    )
)
_COUNT_MESSAGES_GENERATING = _COUNT_MESSAGES.values(generating_message_id=bindparam("generating"))
_CLEAR_GENERATING = (
    update(SESSIONS)
    .where(
        SESSIONS.c.session_id == bindparam("key"),
        SESSIONS.c.generating_message_id == bindparam("message"),
    )
    .values(generating_message_id=None)
)
_CLEAR_GENERATING_AT = _CLEAR_GENERATING.values(
    updated_at=bindparam("at", type_=SESSIONS.c.updated_at.type)
)
_INSERT_MESSAGE = insert(MESSAGES)
_FINISH_MESSAGE = (
    update(MESSAGES)
    .where(MESSAGES.c.id == bindparam("message"))
    .values(
        content=bindparam("text", type_=MESSAGES.c.content.type),
        metadata=bindparam("meta", type_=MESSAGES.c.metadata.type),
        timestamp=bindparam("at", type_=MESSAGES.c.timestamp.type),
    )
)


@dataclass(frozen=True, slots=True)
class SessionKey:
    """Position of a session in "most recently updated first" order."""

    updated_at: datetime
    session_id: str


class Repository:
    """Statements on one database session, in the caller's transaction: they flush, never
    commit."""

    def __init__(self, db: AsyncSession) -> None:
        self.db = db  # a database session ("session" alone is a chat session here)

    @classmethod
    def from_session(cls, db: AsyncSession) -> Self:
        return cls(db)


class SessionRepository(Repository):
    async def get(self, session_id: str) -> ChatSession | None:
        return await self.db.get(ChatSession, session_id)

    async def insert(self, row: ChatSession) -> ChatSession:
        self.db.add(row)
        await self.db.flush()
        return row

    async def list_for_user(
        self, user_id: str, *, limit: int, after: SessionKey | None
    ) -> Sequence[ChatSession]:
        """Up to `limit` of the user's sessions, most recently updated first, after `after`."""
        query = select(ChatSession).where(col(ChatSession.user_id) == user_id)
        if after is not None:
            query = query.where(
                or_(
                    col(ChatSession.updated_at) < after.updated_at,
                    and_(
                        col(ChatSession.updated_at) == after.updated_at,
                        col(ChatSession.session_id) < after.session_id,
                    ),
                )
            )
        query = query.order_by(
            col(ChatSession.updated_at).desc(),
            col(ChatSession.session_id).desc(),
        ).limit(limit)
        return (await self.db.scalars(query)).all()

    async def update(
        self, row: ChatSession, *, title: str | None, context: dict[str, Any] | None
    ) -> ChatSession:
        if title is not None:
            row.title = title
        if context is not None:
            row.context = context
            flag_modified(row, "context")  # JSON change detection takes `true` for `1`
        row.updated_at = utcnow()
        await self.db.flush()
        return row

    async def lock(self, session_id: str) -> ChatSession | None:
        """The session's row, fresh and locked until the transaction ends (None if gone).

        Every transaction that writes a session's messages locks its row first (a turn's lease
        claim does), so two of them never wait for each other in opposite orders (deadlock).
        """
        return await self.db.get(
            ChatSession, session_id, with_for_update=True, populate_existing=True
        )

    async def delete(self, session_id: str) -> None:
        """Delete the session and its messages (explicitly, whatever the foreign keys do);
        lock its row first (see `lock`)."""
        await self.db.execute(delete(ChatMessage).where(col(ChatMessage.session_id) == session_id))
        await self.db.execute(delete(ChatSession).where(col(ChatSession.session_id) == session_id))

    async def set_mirror(
        self, session_id: str, mirror_id: str, chat_id: str, *, replacing: str | None
    ) -> bool:
        """Point the session at its RAGFlow mirror in `chat_id`, unless someone else already
        changed it."""
        result = await self.db.execute(
            update(SESSIONS)
            .where(
                SESSIONS.c.session_id == session_id,
                SESSIONS.c.ragflow_session_id == replacing
                if replacing is not None
                else SESSIONS.c.ragflow_session_id.is_(None),
            )
            .values(ragflow_session_id=mirror_id, ragflow_chat_id=chat_id)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def mirrors_in_use(self, mirror_ids: Sequence[str]) -> set[str]:
        """Which of these RAGFlow sessions are some session's mirror."""
        rows = await self.db.scalars(
            select(SESSIONS.c.ragflow_session_id).where(
                SESSIONS.c.ragflow_session_id.in_(mirror_ids)
            )
        )
        return {mirror for mirror in rows if mirror is not None}

    async def record_mirror_chat(self, chat_id: str) -> int:
        """Mirrors made before their chat was recorded: record `chat_id`; how many."""
        result = await self.db.execute(
            update(SESSIONS)
            .where(SESSIONS.c.ragflow_session_id.is_not(None), SESSIONS.c.ragflow_chat_id.is_(None))
            .values(ragflow_chat_id=chat_id)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def record_messages(
        self, session_id: str, count: int, at: datetime, *, generating: int | None = None
    ) -> None:
        """Count `count` more (or fewer) messages; note the reply being generated, if any."""
        params: dict[str, Any] = {"key": session_id, "added": count, "at": at}
        if generating is None:
            await self.db.execute(_COUNT_MESSAGES, params)
        else:
            await self.db.execute(_COUNT_MESSAGES_GENERATING, params | {"generating": generating})

    async def orphaned_generations(self, now: datetime) -> Sequence[tuple[str, int]]:
        """(session, message) of replies in progress that no live turn holds."""
        rows = await self.db.execute(
            select(col(ChatSession.session_id), col(ChatSession.generating_message_id)).where(
                col(ChatSession.generating_message_id).is_not(None),
                or_(
                    col(ChatSession.turn_lock_owner).is_(None),
                    col(ChatSession.turn_lock_expires_at) < now,
                ),
            )
        )
        return [
            (session_id, message_id) for session_id, message_id in rows if message_id is not None
        ]

    async def clear_generating(
        self, session_id: str, message_id: int, *, updated_at: datetime | None = None
    ) -> bool:
        """Forget the reply in progress, if it is still that one; whether it was."""
        params: dict[str, Any] = {"key": session_id, "message": message_id}
        if updated_at is None:
            result = await self.db.execute(_CLEAR_GENERATING, params)
        else:
            result = await self.db.execute(_CLEAR_GENERATING_AT, params | {"at": updated_at})
        return bool(result.rowcount)  # type: ignore[attr-defined]


class MessageRepository(Repository):
    async def insert(self, message: ChatMessage) -> ChatMessage:
        """Store a new message (a Core insert: no ORM bookkeeping); it gets its id."""
        result = await self.db.execute(
            _INSERT_MESSAGE,
            {
                "session_id": message.session_id,
                "seq": message.seq,
                "role": message.role,
                "content": message.content,
                "timestamp": message.timestamp,
                "client_message_id": message.client_message_id,
                "metadata": message.meta,
            },
        )
        message.id = result.inserted_primary_key[0]  # type: ignore[attr-defined]
        return message

    async def latest(
        self, session_id: str, *, limit: int, before_seq: int | None = None
    ) -> tuple[list[ChatMessage], bool]:
        """The latest `limit` messages before `before_seq`, oldest first; and are there older?"""
        query = select(ChatMessage).where(col(ChatMessage.session_id) == session_id)
        if before_seq is not None:
            query = query.where(col(ChatMessage.seq) < before_seq)
        query = query.order_by(col(ChatMessage.seq).desc()).limit(limit + 1)
        rows = list((await self.db.scalars(query)).all())
        has_more = len(rows) > limit
        del rows[limit:]
        rows.reverse()
        return rows, has_more

    async def newest_texts(
        self, session_id: str, *, limit: int, before_seq: int | None = None
    ) -> Sequence[tuple[int, str, str, str | None]]:
        """(seq, role, content, metadata's status) of up to `limit` messages before
        `before_seq`, newest first: what an agent is rebuilt from, without loading whole rows
        (a reply's metadata can hold all its references)."""
        status = MESSAGES.c.metadata["status"].as_string()
        query = select(MESSAGES.c.seq, MESSAGES.c.role, MESSAGES.c.content, status)
        query = query.where(MESSAGES.c.session_id == session_id)
        if before_seq is not None:
            query = query.where(MESSAGES.c.seq < before_seq)
        rows = await self.db.execute(query.order_by(MESSAGES.c.seq.desc()).limit(limit))
        return [(seq, role, content, status) for seq, role, content, status in rows]

    async def finish(
        self, message_id: int, content: str, meta: dict[str, Any], at: datetime
    ) -> bool:
        """Store a reply's final text and metadata in its placeholder row."""
        result = await self.db.execute(
            _FINISH_MESSAGE, {"message": message_id, "text": content, "meta": meta, "at": at}
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def remove(self, message_id: int) -> None:
        await self.db.execute(delete(ChatMessage).where(col(ChatMessage.id) == message_id))

    async def get(self, message_id: int) -> ChatMessage | None:
        return await self.db.get(ChatMessage, message_id)

    async def by_client_id(self, session_id: str, client_message_id: str) -> ChatMessage | None:
        return await self.db.scalar(
            select(ChatMessage).where(
                col(ChatMessage.session_id) == session_id,
                col(ChatMessage.client_message_id) == client_message_id,
            )
        )

    async def at_seq(self, session_id: str, seq: int) -> ChatMessage | None:
        return await self.db.scalar(
            select(ChatMessage).where(
                col(ChatMessage.session_id) == session_id, col(ChatMessage.seq) == seq
            )
        )

    async def after(self, session_id: str, after_seq: int) -> Sequence[ChatMessage]:
        """Messages newer than `after_seq`, oldest first."""
        return (
            await self.db.scalars(
                select(ChatMessage)
                .where(col(ChatMessage.session_id) == session_id, col(ChatMessage.seq) > after_seq)
                .order_by(col(ChatMessage.seq))
            )
        ).all()
