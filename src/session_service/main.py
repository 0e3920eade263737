"""The ASGI app: lifespan (engine, session factory), error handlers, routers."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from asgi_correlation_id import CorrelationIdMiddleware
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from prometheus_fastapi_instrumentator import Instrumentator
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from session_service import __version__
from session_service.agents.pool import AgentPool
from session_service.agents.sweeper import sweep_once
from session_service.agents.workers import Workers
from session_service.api import agents, audit, feedback, health, metrics, search, sessions, turns
from session_service.background import Repeating
from session_service.chat import recovery
from session_service.chat.mcp_tools import MCP_RETRY_SECONDS, McpTools
from session_service.chat.mirror import Mirror
from session_service.chat.stopping import STOP_POLL_SECONDS
from session_service.chat.turn import ChatTurns
from session_service.config import Settings, load_settings
from session_service.db.engine import create_engine, create_session_factory
from session_service.db.turn_lock import TurnLocks
from session_service.deps import State
from session_service.error_handlers import add_error_handlers
from session_service.llm.factory import build_chat_model, close_chat_model
from session_service.logs import configure_logging
from session_service.metrics import HTTP_REQUESTS
from session_service.middleware import BodyLimit, DatabaseRetry, PageHeaders
from session_service.ragflow.client import RagflowClient, new_http_client

log = logging.getLogger(__name__)

DESCRIPTION = """
Chat sessions, each with an LLM agent kept in memory while in use, with every session and
message stored in the database for good.

Authenticate with `Authorization: Bearer <JWT>`: HS256 with `AUTH_JWT_SECRET`, or RS256/ES256
from an identity provider (`AUTH_JWKS_URL`); `sub` = user id, `exp` required, `scope` may hold
`admin`. In development mode (neither set) every request acts as admin user `dev`.
Errors are JSON with a human-readable `detail`. The full contract: `docs/api.md`.
"""

STATIC_DIR = Path(__file__).parent / "static"  # the chat page: no build step
# 32,000 characters of content, JSON-escaped at worst (12 bytes a character), with room to spare.
MAX_BODY_BYTES = 1024 * 1024
# Objects allocated between young collections (Python's default: 700). A stream makes many
# short-lived objects; collecting them less often makes fewer and cheaper full collections.
GC_YOUNG_THRESHOLD = 10_000
SHUTDOWN_GRACE_SECONDS = 10.0  # how long replies being generated may run on at shutdown


def create_app(settings: Settings | None = None) -> FastAPI:
    resolved = settings or load_settings()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[State]:
        configure_logging(resolved)
        if resolved.dev_mode:
            log.warning(
                "DEVELOPMENT MODE: neither AUTH_JWT_SECRET nor AUTH_JWKS_URL is set, every "
                "request acts as admin user 'dev'. Set one before exposing this service."
            )
        engine = create_engine(resolved)
        session_factory = create_session_factory(engine)
        reserve = create_engine(resolved, reserve=True)
        pool = AgentPool(resolved.agent_pool_max_size)
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(engine.dispose)  # last out: the others still use it
            stack.push_async_callback(reserve.dispose)
            workers = Workers.from_environment(pool)  # this replica's other worker processes
            await workers.start()
            stack.push_async_callback(workers.stop)
            mirror = await _start_ragflow(resolved, session_factory, stack)
            llm = build_chat_model(resolved)
            reserve_factory = create_session_factory(reserve)
            stack.push_async_callback(close_chat_model, llm)
            mcp = await _start_mcp(resolved, stack)
            turns = ChatTurns(
                resolved,
                session_factory,
                reserve_factory,
                pool,
                TurnLocks(reserve, lease_seconds=resolved.turn_lock_lease_seconds),
                llm,
                mirror,
                mcp,
            )
            max_age = resolved.agent_max_age_seconds

            async def sweep() -> None:
                sweep_once(pool, max_age)

            _run_in_background(
                stack,
                Repeating("agent-sweep", sweep, interval=resolved.agent_cleanup_interval_seconds),
            )
            _run_in_background(
                stack,
                Repeating(
                    "orphaned-replies",
                    functools.partial(recovery.interrupt_orphans, reserve_factory),
                    interval=resolved.turn_lock_lease_seconds,
                    run_at_start=True,
                ),
            )
            _run_in_background(
                stack, Repeating("reply-stops", turns.stops.watch, interval=STOP_POLL_SECONDS)
            )
            stack.push_async_callback(turns.close, SHUTDOWN_GRACE_SECONDS)
            watching = asyncio.create_task(turns.admission.watch(), name="event-loop-lag")
            stack.callback(watching.cancel)
            # What start-up made (modules, models, clients) lives as long as the process: out
            # of the collector's sight, so that its full collections walk only what turns make
            # (a full collection over it stalled every stream ~170 ms; bench/streams.py).
            gc.collect()
            gc.freeze()
            gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
            yield {
                "settings": resolved,
                "engine": engine,
                "session_factory": session_factory,
                "pool": pool,
                "workers": workers,
                "turns": turns,
                "mirror": mirror,
            }

    app = FastAPI(
        title="session-service",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.add_middleware(DatabaseRetry)  # innermost: sees the answers of exception handlers
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(PageHeaders)
    if resolved.cors_allow_origins:  # a preflight answered here gets its X-Request-ID
        app.add_middleware(
            CORSMiddleware,
            allow_origins=resolved.cors_allow_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID", "X-Request-ID"],
            expose_headers=["X-Request-ID"],
            max_age=600,
        )
    app.add_middleware(CorrelationIdMiddleware)  # X-Request-ID: taken, or made, and sent back
    add_error_handlers(app)
    if HTTP_REQUESTS is not None:
        Instrumentator(excluded_handlers=["/metrics"]).add(HTTP_REQUESTS).instrument(app)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(agents.router)  # before sessions: `status` and `cleanup` are not ids
    app.include_router(sessions.router)
    app.include_router(turns.router)
    app.include_router(audit.router)
    app.include_router(feedback.router)
    app.include_router(search.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def chat_page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    return app


async def _start_ragflow(
    settings: Settings,
    session_factory: async_sessionmaker[AsyncSession],
    stack: contextlib.AsyncExitStack,
) -> Mirror | None:
    """The shared RAGFlow client and the mirror's deletion loop; None when RAGFlow is off."""
    if not settings.ragflow_enabled:
        return None
    assert settings.ragflow_base_url is not None
    assert settings.ragflow_api_key is not None
    assert settings.ragflow_chat_id is not None
    http = await stack.enter_async_context(
        new_http_client(
            settings.ragflow_base_url,
            settings.ragflow_api_key.get_secret_value(),
            settings.ragflow_timeout_seconds,
        )
    )
    mirror = Mirror(
        RagflowClient(http, settings.ragflow_chat_id, settings.ragflow_dataset_ids),
        session_factory,
        retry_interval=settings.ragflow_retry_interval_seconds,
    )
    await mirror.record_older_mirrors()
    _run_in_background(stack, mirror.deletions)
    log.info(
        "RAGFlow on: %s chat %s, grounding by %s",
        settings.ragflow_base_url,
        settings.ragflow_chat_id,
        "retrieval" if settings.ragflow_dataset_ids else "the chat's answers",
    )
    return mirror


async def _start_mcp(settings: Settings, stack: contextlib.AsyncExitStack) -> McpTools | None:
    """The MCP servers' tools, listed at start (a server that does not answer at once is
    tried again in the background); None unless the agent uses tools and servers are set."""
    if settings.agent_grounding != "tools" or not settings.mcp_servers:
        return None
    mcp = McpTools(settings.mcp_servers)
    await mcp.list_missing()
    _run_in_background(stack, Repeating("mcp-tools", mcp.list_missing, interval=MCP_RETRY_SECONDS))
    return mcp


def _run_in_background(stack: contextlib.AsyncExitStack, work: Repeating) -> None:
    """Start `work` now; stop it (after its round in progress) when the lifespan ends."""
    work.start()
    stack.push_async_callback(work.stop)


app = create_app()
