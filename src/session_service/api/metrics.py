"""GET /metrics: Prometheus text format, all worker processes together under `--workers N`."""

from __future__ import annotations

import os

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool

from session_service import metrics

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
async def prometheus_metrics(request: Request) -> Response:
    """Request, turn, LLM, RAGFlow, agent pool and database pool metrics."""
    engine: AsyncEngine = request.state.engine
    pool = engine.sync_engine.pool
    if isinstance(pool, QueuePool):
        metrics.DB_POOL_IN_USE.set(pool.checkedout())
        metrics.DB_POOL_OPEN.set(pool.checkedin() + pool.checkedout())
    registry = REGISTRY
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
