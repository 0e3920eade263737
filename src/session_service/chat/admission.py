"""How many turns one process takes on at once (MAX_CONCURRENT_TURNS), and whether its event
loop still keeps time (MAX_EVENT_LOOP_LAG_MS).

Past its capacity, a process on one event loop keeps accepting streams it then serves late or
fails (its loop saturated, its connection pool queued): a turn it cannot serve is refused
before anything is stored, with 503 and `Retry-After`, so the client tries again (or another
replica) and nothing accepted is lost. The count bounds the work taken on; the loop's lag is
the measure of what the machine actually keeps up with (a faster LLM, a slower CPU), so a
loop running late refuses new turns too, while the turns it has taken on run out.
"""

from __future__ import annotations

import asyncio
from collections import deque

from session_service import metrics
from session_service.errors import ServiceError

RETRY_AFTER_SECONDS = 1
LAG_INTERVAL_SECONDS = 0.1  # how often the loop is timed
LAG_WINDOW = 10  # the lag that counts: the largest of the last second's measures


class Overloaded(ServiceError):
    status_code = 503
    code = "overloaded"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


class Admission:
    """Counts the turns in flight (admitted, until their reply is stored or given up), and
    times the event loop while `watch` runs (the app's lifespan runs it)."""

    def __init__(self, limit: int, lag_limit_ms: float = 0) -> None:
        self.limit = limit
        self.lag_limit = lag_limit_ms / 1000
        self.in_flight = 0
        self.lag = 0.0  # seconds: the largest delay of the loop over the last second
        self._lags: deque[float] = deque(maxlen=LAG_WINDOW)

    def enter(self) -> None:
        refusal = self._refusal()
        if refusal is not None:
            metrics.TURNS_REFUSED.inc()
            raise Overloaded(refusal)
        self.in_flight += 1
        metrics.TURNS_IN_FLIGHT.inc()

    def _refusal(self) -> str | None:
        if self.in_flight >= self.limit:
            return (
                f"this process is running its limit of {self.limit} turns at once; "
                "try again shortly"
            )
        if self.lag_limit and self.lag > self.lag_limit:
            return (
                f"this process is overloaded (its event loop runs {self.lag * 1000:.0f} ms "
                "late); try again shortly"
            )
        return None

    def leave(self) -> None:
        self.in_flight -= 1
        metrics.TURNS_IN_FLIGHT.dec()

    async def watch(self) -> None:
        """Time the event loop for as long as the process serves: how late a timer runs."""
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + LAG_INTERVAL_SECONDS
            await asyncio.sleep(LAG_INTERVAL_SECONDS)
            self._lags.append(max(0.0, loop.time() - due))
            self.lag = max(self._lags)
            metrics.EVENT_LOOP_LAG.set(self.lag)
