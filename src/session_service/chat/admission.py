"""How many turns one process takes on at once (MAX_CONCURRENT_TURNS).

Past the bound, a process on one event loop keeps accepting streams it then serves late or
fails (its loop saturated, its connection pool queued): a turn it cannot serve is refused
before anything is stored, with 503 and `Retry-After`, so the client tries again (or another
replica) and nothing accepted is lost.
"""

from __future__ import annotations

from session_service import metrics
from session_service.errors import ServiceError

RETRY_AFTER_SECONDS = 1


class Overloaded(ServiceError):
    status_code = 503

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"this process is running its limit of {limit} turns at once; try again shortly",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )


class Admission:
    """Counts the turns in flight: admitted, until their reply is stored (or given up)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0

    def enter(self) -> None:
        if self.in_flight >= self.limit:
            metrics.TURNS_REFUSED.inc()
            raise Overloaded(self.limit)
        self.in_flight += 1
        metrics.TURNS_IN_FLIGHT.inc()

    def leave(self) -> None:
        self.in_flight -= 1
        metrics.TURNS_IN_FLIGHT.dec()
