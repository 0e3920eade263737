"""One turn at a time per session: an asyncio lock within the process, a lease across replicas.

The lease is two columns of the session's row. It is claimed by an atomic UPDATE in the same
transaction as the turn's first write (the question) and let go in the same transaction as its
last (the answer), and renewed in between, so it costs no transaction of its own and no
connection is held while the turn runs; a crashed holder's lease simply expires. (The columns
are `turn_lock_owner`, the holder's random token, and `turn_lock_expires_at`.)

`claim_with` and `release_with` take the turn's write as a callback: the claim's polling and
retries, and the reserve pool for the release, belong here, while what the turn writes in
those transactions belongs to chat/; a callback is the one shape that puts both in one
transaction without either layer knowing the other's statements.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from session_service import metrics
from session_service.db.contention import Busy, is_contention
from session_service.db.models import SESSIONS
from session_service.db.types import utcnow
from session_service.errors import SessionBusy, SessionNotFound

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_POLL_SECONDS = 0.01
MAX_POLL_SECONDS = 0.25


# Built once with bound parameters (see db.repositories). A lease is free when nobody holds
# it, when it has expired, or when it is one this process could not release ("stale").
_EXPIRES = bindparam("expires", type_=SESSIONS.c.turn_lock_expires_at.type)
_CLAIM = (
    update(SESSIONS)
    .where(
        SESSIONS.c.session_id == bindparam("key"),
        SESSIONS.c.user_id == bindparam("caller"),  # SQLAlchemy reserves "user_id" here
        or_(
            SESSIONS.c.turn_lock_owner.is_(None),
            SESSIONS.c.turn_lock_expires_at < bindparam("now"),
            SESSIONS.c.turn_lock_owner.in_(bindparam("stale", expanding=True)),
        ),
    )
    .values(turn_lock_owner=bindparam("token"), turn_lock_expires_at=_EXPIRES)
)
_OWNED = update(SESSIONS).where(
    SESSIONS.c.session_id == bindparam("key"), SESSIONS.c.turn_lock_owner == bindparam("token")
)
_RENEW = _OWNED.values(turn_lock_expires_at=_EXPIRES)
_RELEASE = _OWNED.values(turn_lock_owner=None, turn_lock_expires_at=None)


@dataclass
class _LocalLock:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class TurnLocks:
    def __init__(
        self,
        engine: AsyncEngine,
        session_factory: async_sessionmaker[AsyncSession],
        lease_seconds: float,
        reserve: async_sessionmaker[AsyncSession] | None = None,
    ) -> None:
        # Renewals and releases are a single Core statement on plain connections of `engine`,
        # the reserve's: a busy pool must not lose a running turn its lease.
        self._engine = engine
        self.session_factory = session_factory  # claims: a new turn may wait, or give up
        self.reserve = reserve or session_factory  # the turn's last write, recovery
        self._lease = timedelta(seconds=lease_seconds)
        self._local: dict[str, _LocalLock] = {}
        # Leases this process may have left behind (the database was down): its own to take again.
        self.unreleased: dict[str, set[str]] = {}

    @contextlib.asynccontextmanager
    async def hold(
        self, session_id: str, user_id: str, *, wait_seconds: float, wait: bool
    ) -> AsyncIterator[Lease]:
        """This process's turn on `user_id`'s session for the block: SessionBusy if it cannot be
        had in time. The lease across replicas is then claimed with `Lease.claim_with`."""
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
                lease = Lease(self, session_id, user_id, deadline)
                try:
                    yield lease
                finally:
                    await asyncio.shield(lease.end())  # never cut a release in half
            finally:
                local.lock.release()  # even if cancelled while waiting for the release
        finally:
            local.users -= 1
            if local.users == 0:
                del self._local[session_id]

    async def try_claim(self, db: AsyncSession, session_id: str, user_id: str, token: str) -> bool:
        """Claim the lease in `db`'s transaction (locking the session's row until it ends);
        SessionNotFound if the session is not `user_id`'s."""
        now = utcnow()
        claimed = await db.execute(
            _CLAIM,
            {
                "key": session_id,
                "caller": user_id,
                "now": now,
                "stale": list(self.unreleased.get(session_id, ())),
                "token": token,
                "expires": now + self._lease,
            },
        )
        if claimed.rowcount == 1:  # type: ignore[attr-defined]
            return True
        found_user = await db.scalar(
            select(SESSIONS.c.user_id).where(SESSIONS.c.session_id == session_id)
        )
        if found_user != user_id:
            raise SessionNotFound()
        return False

    async def renew_until(self, done: asyncio.Event, session_id: str, token: str) -> None:
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
                        _RENEW,
                        {"key": session_id, "token": token, "expires": utcnow() + self._lease},
                    )
                if renewed.rowcount != 1:
                    metrics.TURN_LEASE_RENEWALS.labels(metrics.LeaseRenewal.LOST).inc()
                    log.warning("turn lease lost session_id=%s", session_id)
                    return
                metrics.TURN_LEASE_RENEWALS.labels(metrics.LeaseRenewal.RENEWED).inc()
            except Exception as exc:  # the database may be back before the lease runs out
                metrics.TURN_LEASE_RENEWALS.labels(metrics.LeaseRenewal.FAILED).inc()
                log.warning("turn lease renewal failed session_id=%s reason=%r", session_id, exc)

    async def release(self, session_id: str, token: str) -> None:
        """Let go in a transaction of its own: the turn ended without its last write."""
        try:
            async with self._engine.begin() as db:
                await db.execute(_RELEASE, {"key": session_id, "token": token})
        except Exception as exc:  # it expires by itself; the turn's outcome stands
            self.unreleased.setdefault(session_id, set()).add(token)
            log.warning("turn lease release failed session_id=%s reason=%r", session_id, exc)


class Lease:
    """The turn's lease on the session's row, from `claim_with` until `release_with` (or the
    end of `TurnLocks.hold`)."""

    def __init__(self, locks: TurnLocks, session_id: str, user_id: str, deadline: float) -> None:
        self._locks = locks
        self._session_id = session_id
        self._user_id = user_id
        self._deadline = deadline
        self._token = uuid.uuid4().hex
        self._claimed = False
        self._done = asyncio.Event()
        self._renewer: asyncio.Task[None] | None = None

    async def claim_with(self, then: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Claim the lease and run `then` in the same transaction: both happen or neither.

        While another replica holds it, polls until the deadline (SessionBusy after that, or
        Busy if what kept it out last was another transaction holding the row, not a turn).
        """
        loop = asyncio.get_running_loop()
        pause = FIRST_POLL_SECONDS
        while True:
            claimed = committing = contended = False
            try:
                async with self._locks.session_factory() as db, db.begin():
                    claimed = await self._locks.try_claim(
                        db, self._session_id, self._user_id, self._token
                    )
                    if claimed:
                        result = await then(db)
                        committing = True
            except DBAPIError as exc:
                if not is_contention(exc):  # the database may be down: see below
                    self._forget_if(committing)
                    raise
                # Rolled back whole: another writer has the row. Poll again, as for a lease.
                log.info(
                    "contention on the turn lease session_id=%s reason=%s",
                    self._session_id,
                    exc.orig,
                )
                contended = True
            except BaseException:
                self._forget_if(committing)
                raise
            if claimed:
                break
            if loop.time() + pause > self._deadline:
                raise Busy() if contended else SessionBusy()
            await asyncio.sleep(pause)
            pause = min(pause * 2, MAX_POLL_SECONDS)
        self._claimed = True
        self._locks.unreleased.pop(self._session_id, None)
        self._renewer = asyncio.create_task(
            self._locks.renew_until(self._done, self._session_id, self._token)
        )
        return result

    async def release_with(self, then: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run `then` and let the lease go in one transaction; if it fails, the lease is held
        until the end of `TurnLocks.hold`."""
        await self._stop_renewing()
        async with self._locks.reserve() as db, db.begin():
            result = await then(db)
            await db.execute(_RELEASE, {"key": self._session_id, "token": self._token})
        self._claimed = False
        return result

    def _forget_if(self, committing: bool) -> None:
        if committing:  # the commit may have happened after all: ours to take again
            self._locks.unreleased.setdefault(self._session_id, set()).add(self._token)

    async def end(self) -> None:
        await self._stop_renewing()
        if self._claimed:
            self._claimed = False
            await self._locks.release(self._session_id, self._token)

    async def _stop_renewing(self) -> None:
        """Without cutting a renewal in half."""
        self._done.set()
        if self._renewer is not None:
            await self._renewer
