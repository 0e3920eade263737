"""The SQL of sessions and messages. Repositories flush but never commit: the caller owns the
transaction. (Other statements sit beside the code that owns them: the turn lock, the tree,
feedback, stops, the audit log, pending RAGFlow deletions, backups: db/*.py.)"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self

from sqlalchemy import and_, bindparam, delete, false, insert, or_, select, update
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
# A new reply's placeholder: the reply in progress, and the active leaf.
_COUNT_MESSAGES_GENERATING = _COUNT_MESSAGES.values(
    generating_message_id=bindparam("generating"), active_message_id=bindparam("generating")
)
_CLEAR_GENERATING = (
    update(SESSIONS)
    .where(
        SESSIONS.c.session_id == bindparam("key"),
        SESSIONS.c.generating_message_id == bindparam("message"),
    )
    .values(generating_message_id=None, stop_message_id=None)  # a stop asked for is done
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
    """Position of a session in a list: pinned first, then most recently updated."""

    pinned: bool
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
        self, user_id: str, *, archived: bool, limit: int, after: SessionKey | None
    ) -> Sequence[ChatSession]:
        """Up to `limit` of the user's sessions, archived or not, after `after`: pinned first,
        then most recently updated (ties by session_id), along ix_chat_sessions_user_list."""
        query = select(ChatSession).where(
            col(ChatSession.user_id) == user_id, col(ChatSession.archived) == archived
        )
        if after is not None:
            later = or_(
                col(ChatSession.updated_at) < after.updated_at,
                and_(
                    col(ChatSession.updated_at) == after.updated_at,
                    col(ChatSession.session_id) < after.session_id,
                ),
            )
            unpinned = col(ChatSession.pinned) == false()
            # after a pinned one: the pinned further on, then every unpinned one
            query = query.where(or_(unpinned, later) if after.pinned else and_(unpinned, later))
        query = query.order_by(
            col(ChatSession.pinned).desc(),
            col(ChatSession.updated_at).desc(),
            col(ChatSession.session_id).desc(),
        ).limit(limit)
        return (await self.db.scalars(query)).all()

    async def update(
        self,
        row: ChatSession,
        *,
        title: str | None,
        context: dict[str, Any] | None,
        active_message_id: int | None = None,
        archived: bool | None = None,
        pinned: bool | None = None,
    ) -> ChatSession:
        """Change what is given; `updated_at` moves with the conversation's changes (title,
        context, branch), not with its filing (archived, pinned)."""
        moved = title is not None or context is not None or active_message_id is not None
        if title is not None:
            row.title, row.titled = title, True  # a title the user set is never replaced
        if active_message_id is not None:
            row.active_message_id = active_message_id
        if archived is not None:
            row.archived = archived
        if pinned is not None:
            row.pinned = pinned
        if context is not None:
            row.context = context
            flag_modified(row, "context")  # JSON change detection takes `true` for `1`
        if moved:
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
        """Count `count` more (or fewer) messages; note the reply being generated, if any, as
        the session's active leaf."""
        params: dict[str, Any] = {"key": session_id, "added": count, "at": at}
        if generating is None:
            await self.db.execute(_COUNT_MESSAGES, params)
        else:
            await self.db.execute(_COUNT_MESSAGES_GENERATING, params | {"generating": generating})

    async def title(self, session_id: str, title: str) -> bool:
        """Give a session waiting for an automatic title this one; whether it was waiting."""
        result = await self.db.execute(
            update(SESSIONS)
            .where(SESSIONS.c.session_id == session_id, SESSIONS.c.titled == false())
            .values(title=title, titled=True)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def set_active(self, session_id: str, message_id: int | None) -> None:
        """Make the branch ending at `message_id` (a leaf) the active one."""
        await self.db.execute(
            update(SESSIONS)
            .where(SESSIONS.c.session_id == session_id)
            .values(active_message_id=message_id)
        )

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
                "parent_id": message.parent_id,
                "role": message.role,
                "content": message.content,
                "timestamp": message.timestamp,
                "client_message_id": message.client_message_id,
                "metadata": message.meta,
            },
        )
        message.id = result.inserted_primary_key[0]  # type: ignore[attr-defined]
        return message

    async def finish(
        self, message_id: int, content: str, meta: dict[str, Any], at: datetime
    ) -> bool:
        """Store a reply's final text and metadata in its placeholder row."""
        result = await self.db.execute(
            _FINISH_MESSAGE, {"message": message_id, "text": content, "meta": meta, "at": at}
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def remove(self, message_id: int) -> None:
        """Delete a reply's placeholder (it has no text, so no search terms)."""
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
