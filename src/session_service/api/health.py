"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

router = APIRouter(prefix="/health", tags=["health"])
READY_TIMEOUT_SECONDS = 3.0
# Whether the server is a Galera node, and its state: ready for clients, and synced (4).
WSREP_ON = text("SHOW VARIABLES LIKE 'wsrep_on'")
WSREP_STATE = text("SHOW STATUS WHERE Variable_name IN ('wsrep_ready', 'wsrep_local_state')")
SYNCED = "4"


@router.get("/live", summary="Liveness: the process runs")
async def live() -> dict[str, str]:
    """200 while the process runs."""
    return {"status": "ok"}


@router.get(
    "/ready",
    summary="Readiness: the database answers",
    responses={503: {"description": "The database does not answer"}},
)
async def ready(request: Request) -> JSONResponse:
    """200 when the database answers `SELECT 1` (and, a Galera node, is synced and takes
    clients), else 503."""
    engine: AsyncEngine = request.state.engine
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
            wsrep: dict[str, str] = {}
            if engine.dialect.name in ("mysql", "mariadb"):
                on = (await connection.execute(WSREP_ON)).first()
                if on is not None and on[1] == "ON":
                    wsrep = {name: value for name, value in await connection.execute(WSREP_STATE)}
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        return _unavailable(f"database unreachable: {type(exc).__name__}")
    if wsrep and not _synced(wsrep):
        return _unavailable(f"Galera node not ready: {wsrep}")
    return JSONResponse({"status": "ok"})


def _synced(wsrep: dict[str, str]) -> bool:
    return wsrep.get("wsrep_ready") == "ON" and wsrep.get("wsrep_local_state") == SYNCED


def _unavailable(detail: str) -> JSONResponse:
    return JSONResponse({"status": "unavailable", "detail": detail}, status_code=503)
