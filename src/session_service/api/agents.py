"""Admin routes over the agent pools of every worker process of this replica. Registered before
`/{session_id}` so they are never ids."""

from __future__ import annotations

import heapq
import logging
import math
from itertools import islice
from typing import Annotated

from fastapi import APIRouter, Query

from session_service.api.responses import ADMIN_ROUTE
from session_service.api.schemas import (
    AgentStatus,
    CleanupRequest,
    CleanupResponse,
    PoolStatus,
    WorkerCleanup,
    WorkerPoolStatus,
)
from session_service.api.strict_json import StrictJSONRoute
from session_service.db.audit_log import AuditRepository
from session_service.deps import AdminUser, DbSession, SettingsDep, WorkersDep

log = logging.getLogger(__name__)
router = APIRouter(
    prefix="/api/sessions", tags=["admin"], responses=ADMIN_ROUTE, route_class=StrictJSONRoute
)


@router.get(
    "/status",
    summary="Agent pool status (admin)",
)
async def pool_status(
    _admin: AdminUser,
    workers: WorkersDep,
    settings: SettingsDep,
    agents_limit: Annotated[int, Query(ge=0, le=100_000, description="most agents listed")] = 1000,
) -> PoolStatus:
    """The agent pools of every worker: counts, settings, and the agents in memory (most idle
    first), with each worker's share."""
    shares = await workers.status(agents_limit)
    most_idle = heapq.merge(
        *([(share.pid, info) for info in share.agents] for share in shares),
        key=lambda held: held[1].idle_seconds,
        reverse=True,
    )
    return PoolStatus(
        active_agents=sum(share.active_agents for share in shares),
        max_agents=sum(share.max_agents for share in shares),
        # Whole seconds, as api.md has them; sub-second settings (tests) show the next second.
        max_age_seconds=math.ceil(settings.agent_max_age_seconds),
        cleanup_interval_seconds=math.ceil(settings.agent_cleanup_interval_seconds),
        evictions_total=sum(share.evictions_total for share in shares),
        restores_total=sum(share.restores_total for share in shares),
        agents=[
            AgentStatus(
                session_id=info.session_id,
                user_id=info.user_id,
                idle_seconds=round(info.idle_seconds, 3),
                last_used_at=info.last_used_at,
                worker_pid=pid,
            )
            for pid, info in islice(most_idle, agents_limit)
        ],
        workers=[
            WorkerPoolStatus(
                pid=share.pid,
                active_agents=share.active_agents,
                max_agents=share.max_agents,
                evictions_total=share.evictions_total,
                restores_total=share.restores_total,
            )
            for share in shares
        ],
    )


@router.post(
    "/cleanup",
    summary="Release idle agents from memory (admin)",
)
async def cleanup(
    admin: AdminUser,
    workers: WorkersDep,
    settings: SettingsDep,
    db: DbSession,
    body: CleanupRequest | None = None,
) -> CleanupResponse:
    """Release agents idle at least `max_age_seconds` from memory, in every worker; the
    database is untouched."""
    max_age = settings.agent_max_age_seconds
    if body is not None and body.max_age_seconds is not None:
        max_age = body.max_age_seconds
    shares = await workers.release_idle(max_age)
    released = [session_id for share in shares for session_id in share.released]
    await AuditRepository.from_session(db).record(
        admin.id,
        "agents.released",
        detail={
            "max_age_seconds": max_age,
            "released": len(released),
            "session_ids": released[:100],
        },
    )
    log.info("cleanup by admin user_id=%s released=%d", admin.id, len(released))
    return CleanupResponse(
        released=len(released),
        active_agents=sum(share.active_agents for share in shares),
        workers=[
            WorkerCleanup(
                pid=share.pid, released=len(share.released), active_agents=share.active_agents
            )
            for share in shares
        ],
    )
