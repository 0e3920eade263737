"""Replies left in progress by a turn that cannot finish them (its replica died, or its
database went away for good): marked `interrupted`, keeping what was generated."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from session_service.db.models import ChatSession, MessageStatus
from session_service.db.repositories import MessageRepository, SessionRepository
from session_service.db.search import SearchRepository
from session_service.db.types import utcnow

log = logging.getLogger(__name__)


async def interrupt_orphans(reserve: async_sessionmaker[AsyncSession]) -> int:
    """Mark the replies whose turn's lease has expired as interrupted; how many. On the
    reserve pool: a busy process still finishes them."""
    async with reserve() as db:
        orphans = await SessionRepository.from_session(db).orphaned_generations(utcnow())
    for session_id, message_id in orphans:
        async with reserve() as db, db.begin():
            if await SessionRepository.from_session(db).clear_generating(session_id, message_id):
                await mark(db, message_id, MessageStatus.INTERRUPTED)
    if orphans:
        log.info("orphaned replies found=%d", len(orphans))
    return len(orphans)


async def interrupt_orphan(db: AsyncSession, row: ChatSession) -> None:
    """Under the turn lock, a reply still marked in progress has no one generating it."""
    if row.generating_message_id is None:
        return
    await mark(db, row.generating_message_id, MessageStatus.INTERRUPTED)
    await SessionRepository.from_session(db).clear_generating(
        row.session_id, row.generating_message_id
    )


async def mark(db: AsyncSession, message_id: int, status: MessageStatus) -> None:
    """A reply left in progress, ended as it is: `status` interrupted, or stopped."""
    messages = MessageRepository.from_session(db)
    message = await messages.get(message_id)
    if message is not None and message.meta.get("status") == MessageStatus.STREAMING:
        await messages.finish(message_id, message.content, {"status": status}, utcnow())
        # its turn indexes its question when it ends: this one has not
        question = await messages.get(message.parent_id) if message.parent_id else None
        row = await SessionRepository.from_session(db).get(message.session_id)
        if question is not None and question.id is not None and row is not None:
            await SearchRepository.from_session(db).index(
                row.user_id, [(question.id, question.content)]
            )
        log.info(
            "reply marked %s session_id=%s message_id=%d", status, message.session_id, message_id
        )
