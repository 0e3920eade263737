"""The background sweep that releases idle agents, run by the app's lifespan."""

from __future__ import annotations

import logging
import time

from session_service import metrics
from session_service.agents.pool import AgentPool

log = logging.getLogger(__name__)


def sweep_once(pool: AgentPool, max_age: float) -> list[str]:
    started = time.perf_counter()
    released = pool.release_idle(max_age)
    metrics.SWEEP_SECONDS.observe(time.perf_counter() - started)
    shown = ",".join(released[:20]) + (",..." if len(released) > 20 else "")
    log.info(
        "agent sweep released=%d active=%d max_age=%ss took_ms=%.2f session_ids=%s",
        len(released),
        len(pool),
        max_age,
        (time.perf_counter() - started) * 1000,
        shown or "-",
    )
    return released
