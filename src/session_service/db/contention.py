"""Contention is not an outage: a deadlock or a lock wait that timed out means another
transaction held what this one needed. The database is up; the transaction is undone whole and
may simply run again."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from session_service.errors import Conflict

log = logging.getLogger(__name__)

T = TypeVar("T")

# What SQLAlchemy raises when the database is away or busy (no connection, or none free in the
# pool in time), rather than for a bug in a query; `is_contention` tells held rows apart.
UNAVAILABLE = (OperationalError, InterfaceError, PoolTimeout)

DEADLOCK = 1213  # ER_LOCK_DEADLOCK (also a Galera certification conflict)
LOCK_WAIT_TIMEOUT = 1205  # ER_LOCK_WAIT_TIMEOUT
ATTEMPTS = 4
FIRST_PAUSE_SECONDS = 0.02
# Pauses before running again what lost its connection (or a deadlock, for a whole request):
# a new connection goes to the next of DATABASE_HOSTS when its node has left.
RERUN_PAUSES = (0.05, 0.25, 1.0)


class Busy(Conflict):
    code = "busy"

    def __init__(self) -> None:
        super().__init__("the session is busy with a concurrent change; try again")


# A value the database will not store (bad string, too long, invalid JSON, a failed CHECK):
# the input's fault, whatever error class the driver raises it as.
REFUSED_VALUE = frozenset({1366, 1406, 3140, 4025})


def is_contention(exc: BaseException) -> bool:
    """A MySQL/MariaDB deadlock or lock-wait timeout (the transaction was rolled back)."""
    return _error_code(exc) in (DEADLOCK, LOCK_WAIT_TIMEOUT)


def is_deadlock(exc: BaseException) -> bool:
    """A deadlock, or a Galera certification conflict: lost at once, not after a long wait."""
    return _error_code(exc) == DEADLOCK


# The note db.engine adds to an error raised by a COMMIT (not by a statement, nor by
# connecting): the connection may have died after the server committed.
IN_DOUBT = "the commit's outcome is unknown"


def commit_in_doubt(exc: BaseException) -> bool:
    """The transaction may have been committed: its COMMIT failed, not for contention."""
    return IN_DOUBT in getattr(exc, "__notes__", ()) and not is_contention(exc)


def is_refused_value(exc: BaseException) -> bool:
    return _error_code(exc) in REFUSED_VALUE


def _error_code(exc: BaseException) -> object:
    if not isinstance(exc, DBAPIError):
        return None
    args: tuple[object, ...] = getattr(exc.orig, "args", ())
    return args[0] if args else None


async def retry_while_unavailable(
    transaction: Callable[[], Awaitable[T]], what: str, *, seconds: float
) -> T:
    """Run `transaction` again while the database does not answer, for up to `seconds`: a
    new connection may reach it again (the next of DATABASE_HOSTS, or the same one back)."""
    deadline = asyncio.get_running_loop().time() + seconds
    pause = FIRST_PAUSE_SECONDS
    while True:
        try:
            return await transaction()
        except UNAVAILABLE as exc:
            if asyncio.get_running_loop().time() + pause > deadline:
                raise
            log.warning("database unavailable for %s, trying again reason=%r", what, exc)
        await asyncio.sleep(pause)
        pause = min(pause * 2, 1.0)


async def retry_lost_connection(
    work: Callable[[], Awaitable[T]], what: str, *, idempotent: bool = False
) -> T:
    """Run `work` (which opens its own session: a read, or a transaction whose connection died
    before its commit, or any time if `idempotent`) again on a new connection while its
    connection dies under it, len(RERUN_PAUSES) more times at most. A connection that could
    not be made is not this."""
    for pause in (*RERUN_PAUSES, None):
        try:
            return await work()
        except DBAPIError as exc:
            lost = exc.connection_invalidated and (idempotent or not commit_in_doubt(exc))
            if pause is None or not lost:
                raise
            log.warning("connection lost %s, trying again reason=%s", what, exc.orig)
        await asyncio.sleep(pause)
    raise AssertionError("unreachable")


async def retry_on_contention(
    transaction: Callable[[], Awaitable[T]], what: str, *, attempts: int = ATTEMPTS
) -> T:
    """Run `transaction` (which opens and commits its own) again while it loses to contention;
    Busy (409) when it loses every time."""
    pause = FIRST_PAUSE_SECONDS
    for attempt in range(1, attempts):
        try:
            return await transaction()
        except DBAPIError as exc:
            if not is_contention(exc):
                raise
            log.info("contention on %s attempt=%d reason=%s", what, attempt, exc.orig)
        await asyncio.sleep(pause * (1 + random.random()))
        pause *= 2
    try:
        return await transaction()
    except DBAPIError as exc:
        if is_contention(exc):
            raise Busy() from exc
        raise
