"""The replies this process is generating: each in a task of its own, owned here rather than
by the request that asked for it (a client that goes away loses nothing), found again by the
rejoin route, and let run out or stopped at shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from session_service.auth import User
from session_service.chat.generation import MESSAGE_END, Event, Generation
from session_service.chat.public import described
from session_service.chat.sessions import owned_session
from session_service.db.models import ChatMessage, MessageStatus
from session_service.db.repositories import MessageRepository
from session_service.errors import NotFound

REJOIN_POLL_SECONDS = 0.5  # how often a reply generated elsewhere is looked for


class Replies:
    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self.session_factory = session_factory
        self._running: dict[int, Generation] = {}  # by assistant message id
        self._tasks: set[asyncio.Task[None]] = set()

    def start(
        self,
        generation: Generation,
        work: Coroutine[Any, Any, None],
        *,
        ended: Callable[[], None],
    ) -> None:
        """Run `work` (the reply's generation) in a task of its own; `ended` when it ends."""
        message_id = generation.assistant_id
        task = asyncio.create_task(work, name=f"generation-{message_id}")
        self._running[message_id] = generation
        self._tasks.add(task)

        def done(_: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            generation.finish()  # the task has released the turn lock: listeners may go
            self._running.pop(message_id, None)
            ended()

        task.add_done_callback(done)

    def stop(self, message_ids: set[int]) -> None:
        """Stop those of these replies that run here: their LLM streams end at once."""
        for message_id in message_ids & self._running.keys():
            self._running[message_id].stopper.stop()

    def running(self, message_id: int) -> Generation | None:
        return self._running.get(message_id)

    @property
    def any_running(self) -> bool:
        return bool(self._running)

    async def follow(
        self, user: User, session_id: str, message_id: int, after: int | None
    ) -> AsyncIterator[Event]:
        """A reply's events: the rest of one being generated here, after event `after` (None:
        the client has none yet); or, once stored, `message_end` with the whole message."""
        async with self.session_factory() as db:
            await owned_session(db, session_id, user)
            message = await MessageRepository.from_session(db).get(message_id)
        if message is None or message.session_id != session_id or message.role != "assistant":
            raise NotFound("Message not found")
        generation = self._running.get(message_id)
        if generation is not None and (after is not None or not generation.done.is_set()):
            return generation.follow(after=after or 0)
        return self._when_stored(message)

    async def close(self, grace_seconds: float) -> None:
        """At shutdown: let running replies finish for a while, then stop them. A reply cut
        off here stays marked in progress until a replica marks it interrupted."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace_seconds)
        for task in set(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _when_stored(self, message: ChatMessage) -> AsyncIterator[Event]:
        """A reply generated elsewhere (another replica): wait until it is stored, then end."""
        assert message.id is not None
        while True:
            async with self.session_factory() as db:
                fresh = await MessageRepository.from_session(db).get(message.id)
                if fresh is None:
                    return
                if fresh.meta.get("status") != MessageStatus.STREAMING:
                    (shown,) = await described(db, [fresh])
                    break
            await asyncio.sleep(REJOIN_POLL_SECONDS)
        yield Event(0, MESSAGE_END, {"assistant_message": shown})
