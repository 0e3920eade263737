"""Prometheus metrics of the service (HTTP metrics come from prometheus-fastapi-instrumentator).

Gauges say how several worker processes add up (`multiprocess_mode`), for `serve --workers N`,
which runs prometheus-client in its multiprocess mode (PROMETHEUS_MULTIPROC_DIR).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram
from prometheus_fastapi_instrumentator import metrics as http_metrics

# Requests by route and status, and their latency (made once: every app of the process uses it).
HTTP_REQUESTS = http_metrics.default()

TURN_PHASE_SECONDS = Histogram(
    "session_turn_phase_seconds",
    "Time a chat turn spends in each phase: database (storing), grounding (RAGFlow), llm",
    ["phase"],
)
LLM_CALL_SECONDS = Histogram(
    "session_llm_call_seconds", "LLM calls, from the request to the last chunk", ["outcome"]
)
LLM_ERRORS = Counter("session_llm_errors_total", "Failed LLM calls by kind", ["kind"])
RAGFLOW_CALL_SECONDS = Histogram(
    "session_ragflow_call_seconds", "RAGFlow calls by operation", ["operation", "outcome"]
)
RAGFLOW_ERRORS = Counter(
    "session_ragflow_errors_total",
    "Failed RAGFlow calls by operation and kind",
    ["operation", "kind"],
)
AGENTS_ACTIVE = Gauge("session_agents_active", "Agents held in memory", multiprocess_mode="livesum")
AGENTS_MAX = Gauge(
    "session_agents_max",
    "Most agents a process holds (AGENT_POOL_MAX_SIZE)",
    multiprocess_mode="livemax",
)
AGENTS_CREATED = Counter("session_agents_created_total", "Agents created for new sessions")
AGENTS_RESTORED = Counter("session_agents_restored_total", "Agents rebuilt from the database")
AGENTS_EVICTED = Counter(
    "session_agents_evicted_total", "Agents evicted by the AGENT_POOL_MAX_SIZE cap"
)
AGENTS_RELEASED = Counter(
    "session_agents_released_total", "Agents released, by the idle sweep or by hand", ["reason"]
)
SWEEP_SECONDS = Histogram("session_agent_sweep_seconds", "Duration of one idle sweep")
DB_POOL_IN_USE = Gauge(
    "session_db_pool_connections_in_use",
    "Database connections checked out",
    multiprocess_mode="livesum",
)
DB_POOL_OPEN = Gauge(
    "session_db_pool_connections_open", "Database connections open", multiprocess_mode="livesum"
)
