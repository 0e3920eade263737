"""One turn at a time per session: an asyncio lock within the process, a lease across replicas.

The lease is two columns of the session's row, claimed by an atomic UPDATE and renewed while
the turn runs. Each step is its own short transaction, so no connection is held for the length
of a turn; a crashed holder's lease simply expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import Update, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from session_service.db.models import SESSIONS
from session_service.db.types import utcnow
from session_service.errors import Conflict, SessionNotFound

log = logging.getLogger(__name__)

FIRST_POLL_SECONDS = 0.01
MAX_POLL_SECONDS = 0.25


class SessionBusy(Conflict):
    def __init__(self) -> None:
        super().__init__("another turn is running on this session; try again when it ends")


@dataclass
class _LocalLock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class TurnLocks:
    def __init__(self, engine: AsyncEngine, lease_seconds: float) -> None:
        # Plain connections: the lease is a few Core statements, no ORM session needed.
        self._engine = engine
        self._lease = timedelta(seconds=lease_seconds)
        self._local: dict[str, _LocalLock] = {}
        # Leases this process could not release (the database was down): its own to take again.
        self._unreleased: dict[str, str] = {}

    @contextlib.asynccontextmanager
    async def hold(
        self, session_id: str, owner: str, *, wait_seconds: float, wait: bool
    ) -> AsyncIterator[None]:
        """Hold the turn lock of `owner`'s session for the block; SessionBusy if it cannot be
        had in time, SessionNotFound if there is no such session of theirs."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (wait_seconds if wait else 0)
        local = self._local.setdefault(session_id, _LocalLock())
        local.users += 1
        try:
            if not wait and local.lock.locked():
                raise SessionBusy()
            try:
                async with asyncio.timeout_at(deadline):
                    await local.lock.acquire()
            except TimeoutError:
                raise SessionBusy() from None
            try:
                token = uuid.uuid4().hex
                await self._claim(session_id, owner, token, deadline=deadline)
                done = asyncio.Event()
                renewer = asyncio.create_task(self._renew_until(done, session_id, token))
                try:
                    yield
                finally:
                    # Stop renewing without cutting a renewal in half, then let go.
                    done.set()
                    await asyncio.shield(self._stop_and_release(renewer, session_id, token))
            finally:
                local.lock.release()
        finally:
            local.users -= 1
            if local.users == 0:
                del self._local[session_id]

    async def _claim(self, session_id: str, owner: str, token: str, *, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        pause = FIRST_POLL_SECONDS
        while not await self._try_claim(session_id, owner, token):
            if loop.time() + pause > deadline:
                raise SessionBusy()
            await asyncio.sleep(pause)
            pause = min(pause * 2, MAX_POLL_SECONDS)

    async def _try_claim(self, session_id: str, owner: str, token: str) -> bool:
        now = utcnow()
        free = [SESSIONS.c.turn_lock_owner.is_(None), SESSIONS.c.turn_lock_expires_at < now]
        if stale := self._unreleased.get(session_id):
            free.append(SESSIONS.c.turn_lock_owner == stale)
        async with self._engine.begin() as db:
            claimed = await db.execute(
                update(SESSIONS)
                .where(
                    SESSIONS.c.session_id == session_id,
                    SESSIONS.c.user_id == owner,
                    or_(*free),
                )
                .values(turn_lock_owner=token, turn_lock_expires_at=now + self._lease)
            )
            if claimed.rowcount == 1:
                self._unreleased.pop(session_id, None)
                return True
            found_owner = await db.scalar(
                select(SESSIONS.c.user_id).where(SESSIONS.c.session_id == session_id)
            )
        if found_owner != owner:
            raise SessionNotFound()
        return False

    async def _renew_until(self, done: asyncio.Event, session_id: str, token: str) -> None:
        interval = self._lease.total_seconds() / 3
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await done.wait()
            if done.is_set():
                return
            try:
                async with self._engine.begin() as db:
                    renewed = await db.execute(
                        self._owned_by(session_id, token).values(
                            turn_lock_expires_at=utcnow() + self._lease
                        )
                    )
                if renewed.rowcount != 1:
                    log.warning("turn lease lost session_id=%s", session_id)
                    return
            except Exception as exc:  # the database may be back before the lease runs out
                log.warning("turn lease renewal failed session_id=%s reason=%r", session_id, exc)

    async def _stop_and_release(
        self, renewer: asyncio.Task[None], session_id: str, token: str
    ) -> None:
        await renewer
        try:
            async with self._engine.begin() as db:
                await db.execute(
                    self._owned_by(session_id, token).values(
                        turn_lock_owner=None, turn_lock_expires_at=None
                    )
                )
        except Exception as exc:  # it expires by itself; the turn's outcome stands
            self._unreleased[session_id] = token
            log.warning("turn lease release failed session_id=%s reason=%r", session_id, exc)

    @staticmethod
    def _owned_by(session_id: str, token: str) -> Update:
        return update(SESSIONS).where(
            and_(SESSIONS.c.session_id == session_id, SESSIONS.c.turn_lock_owner == token)
        )
