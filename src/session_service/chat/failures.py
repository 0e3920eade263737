"""A reply that failed: the error it answers with, and what of it is kept."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from session_service.chat import questions
from session_service.chat.questions import Opened
from session_service.db.contention import Busy, is_contention
from session_service.db.models import ChatSession, MessageStatus
from session_service.db.repositories import MessageRepository, SessionRepository
from session_service.db.tree import TreeRepository
from session_service.db.types import utcnow
from session_service.errors import DatabaseUnavailable, ServiceError, UpstreamFailed


def error_of(exc: Exception) -> ServiceError:
    """The error a reply that failed with `exc` answers with."""
    if isinstance(exc, ServiceError):
        return exc
    if is_contention(exc):
        return Busy()
    if isinstance(exc, SQLAlchemyError):
        return DatabaseUnavailable("database unavailable while storing the reply")
    return UpstreamFailed(f"the reply failed: {type(exc).__name__}")


async def keep(
    reserve: async_sessionmaker[AsyncSession],
    row: ChatSession,
    opened: Opened,
    generated: str,
    steps: dict[str, Any],
    error: ServiceError,
) -> None:
    """Keep what was generated (text, steps), marked interrupted; with nothing generated,
    no reply. On the reserve pool: a busy process still stores what it generated."""
    session_id, placeholder = row.session_id, opened.placeholder
    message_id = placeholder.id
    assert message_id is not None
    async with reserve() as db, db.begin():
        sessions = SessionRepository.from_session(db)
        if not await sessions.clear_generating(session_id, message_id):
            return  # the session is gone, or another turn recovered the reply
        messages = MessageRepository.from_session(db)
        if generated or steps:
            meta = {**steps, "status": MessageStatus.INTERRUPTED, "error": error.detail}
            await messages.finish(message_id, generated, meta, utcnow())
        else:  # the active leaf goes back to the newest under the question
            await messages.remove(message_id)
            await sessions.record_messages(session_id, -1, utcnow())
            assert placeholder.parent_id is not None
            leaf = await TreeRepository.from_session(db).newest_below(
                session_id, placeholder.parent_id
            )
            await sessions.set_active(session_id, leaf)
        await questions.index_turn(db, row, opened, generated)
