"""Admin routes over the agent pool. Registered before `/{session_id}` so they are never ids."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Query

from session_service.agents.sweeper import sweep_once
from session_service.api.responses import ADMIN_ROUTE
from session_service.api.schemas import (
    AgentStatus,
    CleanupRequest,
    CleanupResponse,
    PoolStatus,
)
from session_service.db.repositories import AuditRepository
from session_service.deps import AdminUser, DbSession, PoolDep, SettingsDep

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/sessions", tags=["admin"], responses=ADMIN_ROUTE)


@router.get(
    "/status",
    summary="Agent pool status (admin)",
)
async def pool_status(
    _admin: AdminUser,
    pool: PoolDep,
    settings: SettingsDep,
    agents_limit: Annotated[int, Query(ge=0, le=100_000, description="most agents listed")] = 1000,
) -> PoolStatus:
    """The agent pool: counts, settings, and the agents in memory (most idle first)."""
    return PoolStatus(
        active_agents=len(pool),
        max_agents=pool.max_size,
        max_age_seconds=settings.agent_max_age_seconds,
        cleanup_interval_seconds=settings.agent_cleanup_interval_seconds,
        evictions_total=pool.evictions_total,
        restores_total=pool.restores_total,
        agents=[
            AgentStatus(
                session_id=info.session_id,
                user_id=info.user_id,
                idle_seconds=round(info.idle_seconds, 3),
                last_used_at=info.last_used_at,
            )
            for info in pool.snapshot(agents_limit)
        ],
    )


@router.post(
    "/cleanup",
    summary="Release idle agents from memory (admin)",
)
async def cleanup(
    admin: AdminUser,
    pool: PoolDep,
    settings: SettingsDep,
    db: DbSession,
    body: CleanupRequest | None = None,
) -> CleanupResponse:
    """Release agents idle at least `max_age_seconds` from memory; the database is untouched."""
    max_age = settings.agent_max_age_seconds
    if body is not None and body.max_age_seconds is not None:
        max_age = body.max_age_seconds
    released = sweep_once(pool, max_age)
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
    return CleanupResponse(released=len(released), active_agents=len(pool))
