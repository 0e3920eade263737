"""Work the service repeats in the background (the agent sweep, mirror deletions, the search
for orphaned replies): started and stopped by the app's lifespan, never cut off mid-round."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from session_service.db.contention import UNAVAILABLE

log = logging.getLogger(__name__)


class Repeating:
    """Runs `work` every `interval` seconds (at start too, if asked), or at once when woken.

    A failing round is logged and the next one runs as usual: the database being away or busy
    (its pool exhausted) in one line, anything else with its traceback. Stopping waits for a
    round in progress to end, so no database write is cut in half; past `grace` seconds it
    cancels.
    """

    def __init__(
        self,
        name: str,
        work: Callable[[], Awaitable[object]],
        *,
        interval: float,
        run_at_start: bool = False,
    ) -> None:
        self.name = name
        self._work = work
        self._interval = interval
        self._run_at_start = run_at_start
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=self.name)

    def wake(self) -> None:
        """Run a round now rather than at the next interval."""
        self._wake.set()

    async def stop(self, grace: float = 5.0) -> None:
        if self._task is None:
            return
        self._stopping = True
        self._wake.set()
        done, _ = await asyncio.wait({self._task}, timeout=grace)
        if not done:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        if not self._run_at_start:
            await self._pause()
        while not self._stopping:
            try:
                await self._work()
            except UNAVAILABLE as exc:
                log.warning(
                    "%s failed: database unavailable or busy (%s); trying again in %ss",
                    self.name,
                    type(exc).__name__,
                    self._interval,
                )
            except Exception:
                log.exception("%s failed; trying again in %ss", self.name, self._interval)
            await self._pause()

    async def _pause(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._interval):
                await self._wake.wait()
        self._wake.clear()
