"""The ASGI app: lifespan (engine, session factory), error handlers, routers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc

from session_service import __version__
from session_service.agents.pool import AgentPool
from session_service.agents.sweeper import sweep_forever
from session_service.api import agents, health, sessions, turns
from session_service.chat.turn import ChatTurns
from session_service.config import Settings, load_settings
from session_service.db.engine import create_engine, create_session_factory
from session_service.db.turn_lock import TurnLocks
from session_service.deps import State
from session_service.errors import DatabaseUnavailable, ServiceError
from session_service.llm.factory import build_chat_model
from session_service.logs import configure_logging

log = logging.getLogger(__name__)

DESCRIPTION = """
Chat sessions, each with an LLM agent kept in memory while in use, with every session and
message stored in the database for good.

Authenticate with `Authorization: Bearer <JWT>` (HS256, `sub` = user id, `scope` may hold
`admin`). In development mode (no `AUTH_JWT_SECRET`) every request acts as admin user `dev`.
Errors are JSON with a human-readable `detail`.
"""

# Errors that mean "the database did not answer", as opposed to a bug in a query.
DATABASE_DOWN = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)


def create_app(settings: Settings | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[State]:
        resolved = settings or load_settings()
        configure_logging(resolved)
        if resolved.dev_mode:
            log.warning(
                "DEVELOPMENT MODE: AUTH_JWT_SECRET is unset, every request acts as admin user "
                "'dev'. Set AUTH_JWT_SECRET before exposing this service."
            )
        engine = create_engine(resolved)
        session_factory = create_session_factory(engine)
        pool = AgentPool(resolved.agent_pool_max_size)
        turns = ChatTurns(
            resolved,
            session_factory,
            pool,
            TurnLocks(session_factory, lease_seconds=resolved.turn_lock_lease_seconds),
            build_chat_model(resolved),
        )
        sweeper = asyncio.create_task(
            sweep_forever(
                pool,
                interval=resolved.agent_cleanup_interval_seconds,
                max_age=resolved.agent_max_age_seconds,
            ),
            name="agent-sweeper",
        )
        try:
            yield {
                "settings": resolved,
                "engine": engine,
                "session_factory": session_factory,
                "pool": pool,
                "turns": turns,
            }
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await engine.dispose()

    app = FastAPI(
        title="session-service",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.add_exception_handler(ServiceError, _service_error)
    for error in DATABASE_DOWN:
        app.add_exception_handler(error, _database_down)
    app.include_router(health.router)
    app.include_router(agents.router)  # before sessions: `status` and `cleanup` are not ids
    app.include_router(sessions.router)
    app.include_router(turns.router)
    return app


async def _service_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _database_down(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
    return await _service_error(
        request, DatabaseUnavailable("database unavailable, try again later")
    )


app = create_app()
