"""Stopping a reply: asked on any replica, carried out by the one generating it.

The request is written on the session's row (`stop_message_id`). The replica generating the
reply stops it at once when it is this one; any other sees the request within
STOP_POLL_SECONDS (each replica with replies running looks for requests in one indexed query,
whatever their number). The reply's LLM request is closed, and the reply is stored with what
was generated, `metadata.status: "stopped"`. A reply whose replica is gone (its lease expired)
is stopped by the replica asked.
"""

from __future__ import annotations

import asyncio
import contextlib

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from session_service.auth import User
from session_service.chat import recovery
from session_service.chat.public import MessagePublic, described
from session_service.chat.replies import Replies
from session_service.chat.sessions import owned_session
from session_service.db.contention import retry_lost_connection
from session_service.db.models import MessageStatus
from session_service.db.repositories import MessageRepository, SessionRepository
from session_service.db.stops import StopRepository
from session_service.db.types import utcnow
from session_service.errors import InvalidInput, NotFound, StopPending

STOP_POLL_SECONDS = 0.5  # how often a replica with replies running looks for stops
STOP_WAIT_SECONDS = 10.0  # how long a stop waits for the reply to be stored
STORED_POLL_SECONDS = 0.05


class Stops:
    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        reserve: async_sessionmaker[AsyncSession],
        replies: Replies,
    ) -> None:
        self.session_factory = session_factory
        self.reserve = reserve
        self.replies = replies

    async def stop(self, user: User, session_id: str, message_id: int) -> MessagePublic:
        """Stop the reply `message_id` and give it as stored; one already stored, as it is."""
        async with self.session_factory() as db, db.begin():
            await owned_session(db, session_id, user)
            message = await MessageRepository.from_session(db).get(message_id)
            if message is None or message.session_id != session_id:
                raise NotFound("Message not found")
            if message.role != "assistant":
                raise InvalidInput(f"message {message_id} is not an assistant message")
            asked = message.meta.get("status") == MessageStatus.STREAMING and (
                await StopRepository.from_session(db).request(session_id, message_id)
            )
        if asked:
            self.replies.stop({message_id})
        return await self._stored(session_id, message_id)

    async def interrupt(self, user: User, session_id: str) -> None:
        """Ask the session's running reply, if there is one, to stop (`if_busy: interrupt`);
        the turn then waits for the session as `wait` does."""

        async def ask() -> int | None:  # the same when run again, its commit in doubt
            async with self.session_factory() as db, db.begin():
                row = await owned_session(db, session_id, user)
                running = row.generating_message_id
                stops = StopRepository.from_session(db)
                asked = running is not None and await stops.request(session_id, running)
            return running if asked else None

        running = await retry_lost_connection(ask, "asking a reply to stop", idempotent=True)
        if running is not None:
            self.replies.stop({running})

    async def watch(self) -> None:
        """Stop the replies running here that another replica was asked to stop (the
        lifespan runs this every STOP_POLL_SECONDS)."""
        if not self.replies.any_running:
            return
        async with self.session_factory() as db:
            requested = await StopRepository.from_session(db).requested()
        if requested:
            self.replies.stop(requested)

    async def _stored(self, session_id: str, message_id: int) -> MessagePublic:
        """The reply once it is stored. A reply no live turn holds is stopped here; one whose
        replica does not store it within STOP_WAIT_SECONDS answers StopPending (503)."""
        running = self.replies.running(message_id)
        if running is not None:  # here: stored when its task ends
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_WAIT_SECONDS):
                    await running.done.wait()
        deadline = asyncio.get_running_loop().time() + STOP_WAIT_SECONDS
        while True:
            async with self.session_factory() as db:
                message = await MessageRepository.from_session(db).get(message_id)
                if message is None:
                    raise NotFound("Message not found")  # a reply that failed with nothing
                if message.meta.get("status") != MessageStatus.STREAMING:
                    (shown,) = await described(db, [message])
                    return shown
                row = await SessionRepository.from_session(db).get(session_id)
            if row is not None and (
                row.turn_lock_owner is None
                or (row.turn_lock_expires_at is not None and row.turn_lock_expires_at < utcnow())
            ):
                await self._stop_orphan(session_id, message_id)
                continue
            if asyncio.get_running_loop().time() > deadline:
                raise StopPending()
            await asyncio.sleep(STORED_POLL_SECONDS)

    async def _stop_orphan(self, session_id: str, message_id: int) -> None:
        """A reply nobody generates any more: keep what it has, marked stopped."""
        async with self.reserve() as db, db.begin():
            if await SessionRepository.from_session(db).clear_generating(session_id, message_id):
                await recovery.mark(db, message_id, MessageStatus.STOPPED)
