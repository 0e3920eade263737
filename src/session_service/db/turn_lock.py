"""One turn at a time per session: an asyncio lock within the process, a lease across replicas.

The lease is two columns of the session's row. It is claimed by an atomic UPDATE in the same
transaction as the turn's first write (the question) and let go in the same transaction as its
last (the answer), and renewed in between, so it costs no transaction of its own and no
connection is held while the turn runs; a crashed holder's lease simply expires. (The columns
are `turn_lock_owner`, the holder's random token, and `turn_lock_expires_at`.)

This module offers the statements (claim, renew, release) and the process's asyncio lock;
the turn's transactions, and the polling of a claim another replica holds, are chat/'s
(`chat.turn_store`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from session_service import metrics
from session_service.db.models import SESSIONS
from session_service.db.types import utcnow
from session_service.errors import SessionBusy, SessionNotFound

log = logging.getLogger(__name__)


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
    def __init__(self, engine: AsyncEngine, lease_seconds: float) -> None:
        # Renewals and releases of their own are a single Core statement on plain connections
        # of `engine`, the reserve's: a busy pool must not lose a running turn its lease.
        self._engine = engine
        self._lease = timedelta(seconds=lease_seconds)
        self._local: dict[str, _LocalLock] = {}
        # Leases this process may have left behind (the database was down): its own to take again.
        self.unreleased: dict[str, set[str]] = {}

    async def acquire(
        self, session_id: str, user_id: str, *, wait_seconds: float, wait: bool
    ) -> Lease:
        """This process's turn on `user_id`'s session, until `Lease.end`: SessionBusy if it
        cannot be had in time. The lease across replicas is then claimed with `try_claim`."""
        deadline = asyncio.get_running_loop().time() + (wait_seconds if wait else 0)
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
        except BaseException:
            self._leave(session_id, local)
            raise
        return Lease(self, session_id, user_id, deadline, local)

    def _leave(self, session_id: str, local: _LocalLock) -> None:
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
    """The turn's lease on the session's row. The turn's transactions are opened by chat/; this
    offers the statements in them: `try_claim` in the first write's (then `claimed`, or
    `may_have_claimed` if its commit's outcome is unknown), `release_in` in the last write's
    (after `stop_renewing`; then `released`). It is handed from the request to the reply's
    task, which calls `end`."""

    def __init__(
        self, locks: TurnLocks, session_id: str, user_id: str, deadline: float, local: _LocalLock
    ) -> None:
        self._locks = locks
        self._local = local
        self._session_id = session_id
        self._user_id = user_id
        self.deadline = deadline  # in the event loop's time: a claim may be polled until then
        self._token = uuid.uuid4().hex
        self._claimed = False
        self._done = asyncio.Event()
        self._renewer: asyncio.Task[None] | None = None
        self._ended = False

    @property
    def token(self) -> str:
        """What the session's row holds while the lease is this turn's."""
        return self._token

    async def try_claim(self, db: AsyncSession) -> bool:
        """Claim the lease in `db`'s transaction: False while another turn holds it."""
        return await self._locks.try_claim(db, self._session_id, self._user_id, self._token)

    def claimed(self) -> None:
        """The claim's transaction committed: renew the lease until it is let go."""
        self._claimed = True
        self._locks.unreleased.pop(self._session_id, None)
        self._renewer = asyncio.create_task(
            self._locks.renew_until(self._done, self._session_id, self._token)
        )

    def may_have_claimed(self) -> None:
        """The claim's commit failed without saying whether it happened: ours to take again."""
        self._locks.unreleased.setdefault(self._session_id, set()).add(self._token)

    async def release_in(self, db: AsyncSession) -> None:
        """Let the lease go in `db`'s transaction (call `released` once it has committed);
        `stop_renewing` first, before `db` holds a connection (see there)."""
        await db.execute(_RELEASE, {"key": self._session_id, "token": self._token})

    def released(self) -> None:
        self._claimed = False

    async def end(self) -> None:
        """The turn is over: let go of the lease if it is still claimed (in a transaction of
        its own), then of the process's lock. Once; a second call does nothing."""
        if self._ended:
            return
        self._ended = True
        try:
            await asyncio.shield(self._let_go())  # never cut a release in half
        finally:  # even if cancelled while waiting for the release
            self._local.lock.release()
            self._locks._leave(self._session_id, self._local)

    async def _let_go(self) -> None:
        await self.stop_renewing()
        if self._claimed:
            self._claimed = False
            await self._locks.release(self._session_id, self._token)

    async def stop_renewing(self) -> None:
        """Without cutting a renewal in half. Not while holding a connection of the reserve
        pool: a renewal in progress may be waiting for one, and a few turns doing so at once
        would hold them all (each waiting for its renewal, which waits for a connection) until
        the pool's timeout."""
        self._done.set()
        if self._renewer is not None:
            await self._renewer
