"""A timeout for every piece of a stream, for the price of a few timers per stream; and a way
to stop the stream from outside (a user's stop), by the same cancellation."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Self


class Stopped(Exception):
    """The stream was stopped from outside (`Stopper.stop`)."""


class Stopper:
    """Stops a `PieceTimeout` block from outside: at once while it runs, or as soon as it
    starts. `cut`: whether it did cut one short."""

    def __init__(self) -> None:
        self.requested = False
        self.cut = False
        self._block: PieceTimeout | None = None

    def stop(self) -> None:
        self.requested = True
        if self._block is not None:
            self._block.stop()


class PieceTimeout:
    """`async with PieceTimeout(seconds) as pieces:` raises TimeoutError once the block waits
    longer than `seconds` since it began or since the last `pieces.came()`: what entering
    `asyncio.timeout(seconds)` anew for every piece does, without a timer made and cancelled
    per piece. A piece only notes the time; the one timer, when it fires, moves itself to
    `seconds` after the last piece if one came meanwhile, and cancels the task if none did.
    """

    def __init__(self, seconds: float, stopper: Stopper | None = None) -> None:
        self.seconds = seconds
        self._stopper = stopper
        self._stopped = False
        self._loop = asyncio.get_running_loop()
        self._last = self._loop.time()
        self._expired = False
        self._task: asyncio.Task[object] | None = None
        self._timer: asyncio.TimerHandle | None = None

    async def __aenter__(self) -> Self:
        self._task = asyncio.current_task()
        self._last = self._loop.time()
        self._timer = self._loop.call_at(self._last + self.seconds, self._check)
        if self._stopper is not None:
            self._stopper._block = self
            if self._stopper.requested:
                self.stop()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._timer is not None
        assert self._task is not None
        self._timer.cancel()
        if self._stopper is not None:
            self._stopper._block = None
        ours = self._expired or self._stopped
        if ours and exc_type is asyncio.CancelledError and self._task.uncancel() == 0:
            if self._stopped:
                assert self._stopper is not None
                self._stopper.cut = True
                raise Stopped from exc
            raise TimeoutError from exc

    def stop(self) -> None:
        """Stop the block now: it raises Stopped, from whatever it waits for."""
        if not (self._expired or self._stopped):
            assert self._task is not None
            self._stopped = True
            self._task.cancel()

    def came(self) -> None:
        """A piece came: the next may take `seconds` from now."""
        self._last = self._loop.time()

    def _check(self) -> None:
        due = self._last + self.seconds
        if self._loop.time() < due:
            self._timer = self._loop.call_at(due, self._check)
            return
        assert self._task is not None
        if not self._stopped:
            self._expired = True
            self._task.cancel()
