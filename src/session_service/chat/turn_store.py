"""A turn's writes, in the two short transactions the turn lock's lease rides on: the question
with its reply's placeholder (claiming the lease), then the reply (letting it go), or what was
generated when the reply fails; and the stored pair of a repeated `client_message_id`."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from session_service.auth import User
from session_service.chat import recovery
from session_service.chat.generation import TurnResult
from session_service.chat.sessions import owned_session
from session_service.db.contention import Busy, is_contention, retry_on_contention
from session_service.db.models import ChatMessage, ChatSession, MessageStatus
from session_service.db.repositories import MessageRepository, SessionRepository
from session_service.db.turn_lock import Lease
from session_service.db.types import utcnow
from session_service.errors import (
    Conflict,
    DatabaseUnavailable,
    ServiceError,
    SessionBusy,
    SessionNotFound,
    UpstreamFailed,
)

log = logging.getLogger(__name__)

# The first write's outcome: a repeated client_message_id's stored pair, or the new question
# and its answer's placeholder.
Stored = TurnResult | tuple[ChatMessage, ChatMessage]

# Polling a lease another replica's turn holds: from 10 ms, doubling, to 0.25 s apart.
FIRST_POLL_SECONDS = 0.01
MAX_POLL_SECONDS = 0.25


class TurnStore:
    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        reserve: async_sessionmaker[AsyncSession],
    ) -> None:
        self.session_factory = session_factory  # the first write: a new turn may wait, or fail
        self.reserve = reserve  # what was generated is stored even by a busy process

    async def first(
        self, lease: Lease, user: User, session_id: str, content: str, client_message_id: str | None
    ) -> tuple[ChatSession, Stored]:
        """The turn's first transaction, claiming its lease. While another replica's turn holds
        it, polled until the lease's deadline: SessionBusy after that (Busy if what kept it out
        last was another transaction holding the row, not a turn)."""
        pause = FIRST_POLL_SECONDS
        while True:
            claimed = committing = contended = False
            try:
                async with self.session_factory() as db, db.begin():
                    claimed = await lease.try_claim(db)
                    if claimed:
                        stored = await self._first(db, user, session_id, content, client_message_id)
                        committing = True
            except BaseException as exc:
                if not (isinstance(exc, DBAPIError) and is_contention(exc)):
                    if committing:  # did the commit happen after all? Unknown
                        lease.may_have_claimed()
                    raise
                # Rolled back whole: another writer has the row. Poll again, as for a lease.
                log.info(
                    "contention on the turn lease session_id=%s reason=%s", session_id, exc.orig
                )
                contended = True
            if committing and not contended:
                lease.claimed()
                return stored
            if asyncio.get_running_loop().time() + pause > lease.deadline:
                raise Busy() if contended else SessionBusy()
            await asyncio.sleep(pause)
            pause = min(pause * 2, MAX_POLL_SECONDS)

    async def _first(
        self,
        db: AsyncSession,
        user: User,
        session_id: str,
        content: str,
        client_message_id: str | None,
    ) -> tuple[ChatSession, Stored]:
        """Under the lease's claim (which has locked the session's row): the pair, if a repeat
        was answered while it waited for the lock; else a reply left in progress marked
        interrupted, and the question with its placeholder."""
        row = await owned_session(db, session_id, user)
        if client_message_id is not None:
            answered = await self.answered(db, session_id, client_message_id, content)
            if answered is not None:
                return row, answered
        await recovery.interrupt_orphan(db, row)
        return row, await self.question(db, row, content, client_message_id)

    async def repeated(
        self, user: User, session_id: str, client_message_id: str, content: str
    ) -> TurnResult | None:
        """The caller's stored pair for a repeated client_message_id, read on its own."""
        async with self.session_factory() as db:
            await owned_session(db, session_id, user)
            return await self.answered(db, session_id, client_message_id, content)

    async def answered(
        self, db: AsyncSession, session_id: str, client_message_id: str, content: str
    ) -> TurnResult | None:
        """The stored pair for a repeated client_message_id, if its answer is stored whole."""
        messages = MessageRepository.from_session(db)
        question = await messages.by_client_id(session_id, client_message_id)
        if question is None:
            return None
        _same_question(question, content)
        reply = await messages.at_seq(session_id, question.seq + 1)
        if (
            reply is None
            or reply.role != "assistant"
            or reply.meta.get("status") == MessageStatus.STREAMING
        ):
            return None
        return TurnResult(question, reply, created=False)

    async def question(
        self, db: AsyncSession, row: ChatSession, content: str, client_message_id: str | None
    ) -> tuple[ChatMessage, ChatMessage]:
        """The user's message (a retried failed one is reused) and a placeholder answer."""
        messages = MessageRepository.from_session(db)
        question = None
        if client_message_id is not None:
            question = await messages.by_client_id(row.session_id, client_message_id)
            if question is not None:
                _same_question(question, content)
            if question is not None and question.seq != row.message_count:
                raise Conflict(
                    "client_message_id was used for an earlier message that is no longer "
                    "the latest; send the message again with a new client_message_id"
                )
        now = utcnow()
        added = 1
        if question is None:
            question = await messages.insert(
                ChatMessage(
                    session_id=row.session_id,
                    seq=row.message_count + 1,
                    role="user",
                    content=content,
                    timestamp=now,
                    client_message_id=client_message_id,
                )
            )
            added = 2
        placeholder = await messages.insert(
            ChatMessage(
                session_id=row.session_id,
                seq=question.seq + 1,
                role="assistant",
                content="",
                timestamp=now,
                meta={"status": MessageStatus.STREAMING},
            )
        )
        await SessionRepository.from_session(db).record_messages(
            row.session_id, added, now, generating=placeholder.id
        )
        return question, placeholder

    async def reply(
        self,
        lease: Lease,
        session_id: str,
        placeholder: ChatMessage,
        content: str,
        meta: dict[str, Any],
    ) -> ChatMessage:
        """Store the answer in its placeholder, letting the turn's lease go with it."""
        assert placeholder.id is not None
        message_id, now = placeholder.id, utcnow()

        await retry_on_contention(
            lambda: self._reply(lease, session_id, message_id, content, meta, now),
            "storing a reply",
        )
        placeholder.content, placeholder.meta, placeholder.timestamp = content, meta, now
        return placeholder

    async def _reply(
        self,
        lease: Lease,
        session_id: str,
        message_id: int,
        content: str,
        meta: dict[str, Any],
        now: datetime,
    ) -> None:
        """One transaction: the answer stored and the lease let go (if it fails, the lease is
        held until the turn's `Lease.end`)."""
        async with self.reserve() as db, db.begin():
            # The session's row first, as every writer of its messages does (no deadlock).
            await SessionRepository.from_session(db).clear_generating(
                session_id, message_id, updated_at=now
            )
            if not await MessageRepository.from_session(db).finish(message_id, content, meta, now):
                raise SessionNotFound()  # deleted while the reply was generated
            await lease.release_in(db)
        lease.released()

    async def failed(
        self, session_id: str, placeholder: ChatMessage, parts: list[str], exc: Exception
    ) -> ServiceError:
        """The error a failed reply answers with, what was generated kept as far as the
        database lets it (if it does not, recovery marks the reply later)."""
        error = exc if isinstance(exc, ServiceError) else _unexpected(exc)
        generated = "".join(parts)
        log.warning(
            "turn failed session_id=%s status=%d generated_chars=%d reason=%r",
            session_id,
            error.status_code,
            len(generated),
            exc,
        )
        try:
            await retry_on_contention(
                lambda: self._keep_failed(session_id, placeholder, generated, error),
                "storing a failed reply",
            )
        except Exception as cleanup:  # the database is down too: recovery finishes it
            log.warning("failed reply not stored session_id=%s reason=%r", session_id, cleanup)
        return error

    async def _keep_failed(
        self, session_id: str, placeholder: ChatMessage, generated: str, error: ServiceError
    ) -> None:
        """Keep what was generated, marked interrupted; with nothing generated, no reply.
        On the reserve pool: a busy process still stores what it generated."""
        message_id = placeholder.id
        assert message_id is not None
        async with self.reserve() as db, db.begin():
            sessions = SessionRepository.from_session(db)
            if not await sessions.clear_generating(session_id, message_id):
                return  # the session is gone, or another turn recovered the reply
            messages = MessageRepository.from_session(db)
            if generated:
                meta = {"status": MessageStatus.INTERRUPTED, "error": error.detail}
                await messages.finish(message_id, generated, meta, utcnow())
            else:
                await messages.remove(message_id)
                await sessions.record_messages(session_id, -1, utcnow())

    async def why_changed(self, session_id: str) -> ServiceError:
        """Why a write of this turn hit a constraint: the session was deleted, or written to."""
        async with self.session_factory() as db:
            gone = await SessionRepository.from_session(db).get(session_id) is None
        if gone:
            return SessionNotFound()
        return Conflict("the session changed during this turn; nothing more was stored")


def _same_question(question: ChatMessage, content: str) -> None:
    """A repeated client_message_id must repeat its message, not send another one."""
    if question.content != content:
        raise Conflict(
            "client_message_id was already used for a different message; send this one "
            "with a new client_message_id"
        )


def _unexpected(exc: Exception) -> ServiceError:
    if is_contention(exc):
        return Busy()
    if isinstance(exc, SQLAlchemyError):
        return DatabaseUnavailable("database unavailable while storing the reply")
    return UpstreamFailed(f"the reply failed: {type(exc).__name__}")
