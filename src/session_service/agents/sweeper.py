"""The background sweep that releases idle agents, run by the app's lifespan."""

from __future__ import annotations

import asyncio
import logging
import time

from session_service.agents.pool import AgentPool

log = logging.getLogger(__name__)


def sweep_once(pool: AgentPool, max_age: float) -> list[str]:
    started = time.perf_counter()
    released = pool.release_idle(max_age)
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


async def sweep_forever(pool: AgentPool, *, interval: float, max_age: float) -> None:
    """Sweep every `interval` seconds until cancelled; one failed sweep does not stop it."""
    while True:
        await asyncio.sleep(interval)
        try:
            sweep_once(pool, max_age)
        except Exception:
            log.exception("agent sweep failed; trying again in %ss", interval)
