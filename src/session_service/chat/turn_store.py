"""A turn's writes, in the two short transactions the turn lock's lease rides on: the question
with its reply's placeholder (claiming the lease; `chat.questions`), then the reply (letting it
go), or what was generated when the reply fails."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from session_service.auth import User
from session_service.chat import failures, questions, recovery
from session_service.chat.generation import TurnResult
from session_service.chat.questions import Ask, Opened, Regenerate
from session_service.chat.sessions import owned_session
from session_service.db.contention import (
    UNAVAILABLE,
    Busy,
    commit_in_doubt,
    is_contention,
    retry_on_contention,
    retry_while_unavailable,
)
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
)

log = logging.getLogger(__name__)

Step = Ask | Regenerate
# The first write's outcome: a repeated client_message_id's stored pair, or the question and
# its answer's placeholder.
Stored = TurnResult | Opened

# How long a generated reply waits for the database to answer again (a node failing over).
STORE_RETRY_SECONDS = 20.0
# What a failed reply keeps of its metadata: the tool-using agent's steps done, and their sources.
KEPT_WHEN_FAILED = ("steps", "references")
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
        self, lease: Lease, user: User, session_id: str, step: Step
    ) -> tuple[ChatSession, Stored]:
        """The turn's first transaction, claiming its lease; if it fails, the turn is over
        (`lease.end`). A constraint it hits means the session was deleted or written to."""
        try:
            return await self._claimed(lease, user, session_id, step)
        except IntegrityError as exc:
            await lease.end()
            raise await self.why_changed(session_id) from exc
        except BaseException:
            await lease.end()
            raise

    async def _claimed(
        self, lease: Lease, user: User, session_id: str, step: Step
    ) -> tuple[ChatSession, Stored]:
        """While another replica's turn holds the lease, polled until its deadline:
        SessionBusy after that (Busy if what kept it out last was another transaction holding
        the row, not a turn)."""
        pause = FIRST_POLL_SECONDS
        while True:
            claimed = committing = contended = False
            try:
                async with self.session_factory() as db, db.begin():
                    claimed = await lease.try_claim(db)
                    if claimed:
                        stored = await self._first(db, user, session_id, step)
                        committing = True
            except BaseException as exc:
                if _connection_lost(exc, committing):  # nothing stored: again, elsewhere
                    log.warning("connection lost storing a question session_id=%s", session_id)
                elif committing and commit_in_doubt(exc):  # did it happen? Read it back
                    lease.may_have_claimed()
                    back = await self._read_back(lease, user, session_id, stored)
                    if back is not None:
                        lease.claimed()
                        return back
                    committing = False  # it did not: again
                elif not (isinstance(exc, DBAPIError) and is_contention(exc)):
                    if committing:  # cancelled, or a bug: whether it committed is unknown
                        lease.may_have_claimed()
                    raise
                else:  # rolled back whole: another writer has the row; poll, as for a lease
                    log.info(
                        "contention on the turn lease session_id=%s reason=%s",
                        session_id,
                        exc.orig,
                    )
                    contended = True
            if committing and not contended:
                lease.claimed()
                return stored
            if asyncio.get_running_loop().time() + pause > lease.deadline:
                raise Busy() if contended else SessionBusy()
            await asyncio.sleep(pause)
            pause = min(pause * 2, MAX_POLL_SECONDS)

    async def _read_back(
        self, lease: Lease, user: User, session_id: str, stored: tuple[ChatSession, Stored]
    ) -> tuple[ChatSession, Stored] | None:
        """After the first write's commit failed in doubt: what it stored, if it happened (the
        lease is this turn's), read through a new connection; None if it did not."""

        async def read() -> tuple[ChatSession, Stored] | None:
            async with self.reserve() as db, db.begin():
                # locking: a COMMIT the server still holds is waited for, not missed
                row = await SessionRepository.from_session(db).lock(session_id)
                if row is None or row.user_id != user.id:
                    raise SessionNotFound()
                if row.turn_lock_owner != lease.token:
                    return None
                if isinstance(stored[1], TurnResult):  # the claim was all it wrote
                    return row, stored[1]
                return row, await questions.reopened(db, row)

        try:
            return await retry_while_unavailable(
                read, "reading back a question", seconds=STORE_RETRY_SECONDS
            )
        except UNAVAILABLE as exc:  # not to be run again: the question may be stored
            raise DatabaseUnavailable("database unavailable while storing the question") from exc

    async def _first(
        self, db: AsyncSession, user: User, session_id: str, step: Step
    ) -> tuple[ChatSession, Stored]:
        """Under the lease's claim (which has locked the session's row): the pair, if a repeat
        was answered while it waited for the lock; else a reply left in progress marked
        interrupted, and the question with its placeholder."""
        row = await owned_session(db, session_id, user)
        if isinstance(step, Ask) and step.client_message_id is not None:
            answered = await questions.answered(db, session_id, step)
            if answered is not None:
                return row, answered
        await recovery.interrupt_orphan(db, row)
        if isinstance(step, Regenerate):
            return row, await questions.regenerate(db, row, step)
        return row, await questions.ask(db, row, step)

    async def precheck(self, user: User, session_id: str, step: Step) -> TurnResult | None:
        """What can be answered before waiting for the turn lock, read on its own: the stored
        pair of a repeated client_message_id; an edit or regeneration aimed at the wrong
        message (or at a reply still being generated), refused at once."""
        async with self.session_factory() as db:
            await owned_session(db, session_id, user)
            if isinstance(step, Regenerate):
                await questions.regenerated(db, session_id, step)
                return None
            if step.edit:
                await questions.edited(db, session_id, step)
            if step.client_message_id is not None:
                return await questions.answered(db, session_id, step)
            return None

    async def reply(
        self,
        lease: Lease,
        row: ChatSession,
        opened: Opened,
        content: str,
        meta: dict[str, Any],
    ) -> ChatMessage:
        """Store the answer in its placeholder, letting the turn's lease go with it; the reply
        as stored."""
        placeholder, now = opened.placeholder, utcnow()
        await lease.stop_renewing()  # before its transaction holds a connection
        stopped = await retry_while_unavailable(  # what was generated is not given up
            lambda: retry_on_contention(
                lambda: self._reply(lease, row, opened, content, meta, now), "storing a reply"
            ),
            "storing a reply",
            seconds=STORE_RETRY_SECONDS,
        )
        if stopped is not None:
            return stopped
        placeholder.content, placeholder.meta, placeholder.timestamp = content, meta, now
        return placeholder

    async def _reply(
        self,
        lease: Lease,
        row: ChatSession,
        opened: Opened,
        content: str,
        meta: dict[str, Any],
        now: datetime,
    ) -> ChatMessage | None:
        """One transaction: the answer stored, the turn's messages indexed for search, and the
        lease let go (if it fails, the lease is held until the turn's `Lease.end`). A reply
        stopped by another replica while this one had lost its lease (the database was away)
        stays as the stop left it, and is given."""
        message_id = opened.placeholder.id
        assert message_id is not None
        async with self.reserve() as db, db.begin():
            messages = MessageRepository.from_session(db)
            # The session's row first, as every writer of its messages does (no deadlock).
            stopped = None
            if not await SessionRepository.from_session(db).clear_generating(
                row.session_id, message_id, updated_at=now
            ):
                stopped = await messages.get(message_id)
                if stopped is not None and stopped.meta.get("status") != MessageStatus.STOPPED:
                    stopped = None
            if stopped is None and not await messages.finish(message_id, content, meta, now):
                raise SessionNotFound()  # deleted while the reply was generated
            await questions.index_turn(db, row, opened, content if stopped is None else "")
            await lease.release_in(db)
        lease.released()
        return stopped

    async def failed(
        self,
        row: ChatSession,
        opened: Opened,
        parts: list[str],
        meta: dict[str, Any],
        exc: Exception,
    ) -> ServiceError:
        """The error a failed reply answers with, what was generated (its text, and the
        agent's steps done in `meta`) kept as far as the database lets it (if it does not,
        recovery marks the reply later)."""
        error = failures.error_of(exc)
        generated = "".join(parts)
        steps = {key: meta[key] for key in KEPT_WHEN_FAILED if key in meta}
        log.warning(
            "turn failed session_id=%s status=%d generated_chars=%d reason=%r",
            row.session_id,
            error.status_code,
            len(generated),
            exc,
        )
        try:
            await retry_on_contention(
                lambda: failures.keep(self.reserve, row, opened, generated, steps, error),
                "storing a failed reply",
            )
        except Exception as cleanup:  # the database is down too: recovery finishes it
            log.warning("failed reply not stored session_id=%s reason=%r", row.session_id, cleanup)
        return error

    async def why_changed(self, session_id: str) -> ServiceError:
        """Why a write of this turn hit a constraint: the session was deleted, or written to."""
        async with self.session_factory() as db:
            gone = await SessionRepository.from_session(db).get(session_id) is None
        if gone:
            return SessionNotFound()
        return Conflict("the session changed during this turn; nothing more was stored")


def _connection_lost(exc: BaseException, committing: bool) -> bool:
    """The connection died before the commit was sent (its node left the cluster, or the
    server went away): the transaction did not happen, and a new connection (the next of
    DATABASE_HOSTS) may run it. A connection that could not be made at all is not this."""
    return isinstance(exc, DBAPIError) and exc.connection_invalidated and not committing
