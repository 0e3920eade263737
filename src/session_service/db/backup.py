"""The SQL of backups: reading sessions and messages in pages, and writing them back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlmodel import col

from session_service.db.models import ChatMessage, ChatSession, MessageFeedback
from session_service.db.repositories import Repository


class BackupRepository(Repository):
    async def count_sessions(self, *, user_id: str | None, session_id: str | None) -> int:
        query = select(func.count()).select_from(ChatSession)
        query = _filtered(query, user_id, session_id)
        return int(await self.db.scalar(query) or 0)

    async def sessions_after(
        self, after: str, *, user_id: str | None, session_id: str | None, limit: int
    ) -> Sequence[ChatSession]:
        query = _filtered(select(ChatSession), user_id, session_id)
        query = query.where(col(ChatSession.session_id) > after)
        return (
            await self.db.scalars(query.order_by(col(ChatSession.session_id)).limit(limit))
        ).all()

    async def messages_after(
        self, session_id: str, after_seq: int, limit: int
    ) -> Sequence[ChatMessage]:
        return (
            await self.db.scalars(
                select(ChatMessage)
                .where(col(ChatMessage.session_id) == session_id, col(ChatMessage.seq) > after_seq)
                .order_by(col(ChatMessage.seq))
                .limit(limit)
            )
        ).all()

    async def session_exists(self, session_id: str) -> bool:
        """Whether it exists, locking its row until the transaction ends: every writer of a
        session's messages locks the session's row first (no deadlock with a turn)."""
        found = await self.db.scalar(
            select(col(ChatSession.session_id))
            .where(col(ChatSession.session_id) == session_id)
            .with_for_update()
        )
        return found is not None

    async def add_session(self, values: dict[str, Any]) -> None:
        await self.db.execute(insert(ChatSession).values(**values))

    async def existing_messages(self, ids: list[int]) -> dict[int, tuple[str, int]]:
        """(session, seq) of the messages with these ids that are stored already."""
        rows = await self.db.execute(
            select(col(ChatMessage.id), col(ChatMessage.session_id), col(ChatMessage.seq)).where(
                col(ChatMessage.id).in_(ids)
            )
        )
        return {
            message_id: (session_id, seq)
            for message_id, session_id, seq in rows
            if message_id is not None
        }

    async def add_messages(self, rows: list[dict[str, Any]]) -> None:
        await self.db.execute(insert(ChatMessage), rows)

    async def add_feedback(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            await self.db.execute(insert(MessageFeedback), rows)

    async def recount(self, session_id: str, active_message_id: int | None) -> None:
        """message_count from the rows, and the active leaf, after an import added some."""
        count = (
            select(func.count())
            .select_from(ChatMessage)
            .where(col(ChatMessage.session_id) == session_id)
            .scalar_subquery()
        )
        await self.db.execute(
            update(ChatSession)
            .where(col(ChatSession.session_id) == session_id)
            .values(message_count=count, active_message_id=active_message_id)
        )


def _filtered(query: Any, user_id: str | None, session_id: str | None) -> Any:
    if user_id is not None:
        query = query.where(col(ChatSession.user_id) == user_id)
    if session_id is not None:
        query = query.where(col(ChatSession.session_id) == session_id)
    return query
