"""Prometheus metrics of the service (HTTP metrics come from prometheus-fastapi-instrumentator).

Gauges say how several worker processes add up (`multiprocess_mode`), for `serve --workers N`,
which runs prometheus-client in its multiprocess mode (PROMETHEUS_MULTIPROC_DIR).

A labelled family shows a series only once `.labels(...)` made it, so each family's known
label values are named next to it and made at import: every series is exported from the
start, at zero, and a rate over it has a beginning rather than a gap before its first event.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Iterable, Iterator
from enum import StrEnum
from typing import TypeVar

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase
from prometheus_fastapi_instrumentator import metrics as http_metrics

from session_service.db.models import Rating

Family = TypeVar("Family", bound=MetricWrapperBase)


def _at_zero(family: Family, *values: Iterable[str]) -> Family:
    """`family` with a series for every combination of its known label values."""
    for combination in itertools.product(*values):
        family.labels(*combination)
    return family


# Requests by route and status, and their latency (made once: every app of the process uses it).
HTTP_REQUESTS = http_metrics.default()


class Phase(StrEnum):
    DATABASE = "database"
    GROUNDING = "grounding"
    LLM = "llm"


class Outcome(StrEnum):
    OK = "ok"
    ERROR = "error"


class LlmOutcome(StrEnum):
    OK = "ok"
    ERROR = "error"
    STOPPED = "stopped"  # a user stopped the reply


class LlmErrorKind(StrEnum):
    TIMEOUT = "timeout"
    HTTP_STATUS = "http_status"
    CONNECTION = "connection"
    OTHER = "other"


class RagflowOperation(StrEnum):
    CREATE_SESSION = "create_session"
    LIST_SESSIONS = "list_sessions"
    RENAME_SESSION = "rename_session"
    DELETE_SESSION = "delete_session"
    ASK = "ask"
    RETRIEVE = "retrieve"


class RagflowErrorKind(StrEnum):
    AUTH = "auth"  # the API key is wrong
    CHAT_FORBIDDEN = "chat_forbidden"  # the key cannot use the chat
    NOT_FOUND = "not_found"  # the session is not (or no longer) the chat's
    ROUTE_MISSING = "route_missing"  # HTTP 404: the server has no such route
    UNSUPPORTED = "unsupported"  # a RAGFlow version that cannot serve the call
    UNAVAILABLE = "unavailable"
    ERROR = "error"


class LeaseRenewal(StrEnum):
    RENEWED = "renewed"
    FAILED = "failed"  # the database did not answer: tried again at the next interval
    LOST = "lost"  # it had expired and another turn took the session


class ReleaseReason(StrEnum):
    IDLE = "idle"  # the background sweep
    MANUAL = "manual"  # an admin's cleanup
    DELETED = "deleted"  # its session was deleted


TURN_PHASE_SECONDS = _at_zero(
    Histogram(
        "session_turn_phase_seconds",
        "Time a chat turn spends in each phase: database (storing), grounding (RAGFlow), llm",
        ["phase"],
    ),
    Phase,
)
LLM_CALL_SECONDS = _at_zero(
    Histogram(
        "session_llm_call_seconds", "LLM calls, from the request to the last chunk", ["outcome"]
    ),
    LlmOutcome,
)
LLM_ERRORS = _at_zero(
    Counter("session_llm_errors_total", "Failed LLM calls by kind", ["kind"]), LlmErrorKind
)
RAGFLOW_CALL_SECONDS = _at_zero(
    Histogram(
        "session_ragflow_call_seconds", "RAGFlow calls by operation", ["operation", "outcome"]
    ),
    RagflowOperation,
    Outcome,
)
RAGFLOW_ERRORS = _at_zero(
    Counter(
        "session_ragflow_errors_total",
        "Failed RAGFlow calls by operation and kind",
        ["operation", "kind"],
    ),
    RagflowOperation,
    RagflowErrorKind,
)
TURNS_IN_FLIGHT = Gauge(
    "session_turns_in_flight",
    "Turns admitted and not yet ended (bounded by MAX_CONCURRENT_TURNS)",
    multiprocess_mode="livesum",
)
TURNS_REFUSED = Counter(
    "session_turns_refused_total",
    "Turns refused up front (503) at MAX_CONCURRENT_TURNS or MAX_EVENT_LOOP_LAG_MS",
)
EVENT_LOOP_LAG = Gauge(
    "session_event_loop_lag_seconds",
    "How late the event loop runs a timer: the largest delay of the last second",
    multiprocess_mode="livemax",
)
TURN_LEASE_RENEWALS = _at_zero(
    Counter(
        "session_turn_lease_renewals_total",
        "Renewals of running turns' leases (every TURN_LEASE_SECONDS / 3) by outcome",
        ["outcome"],
    ),
    LeaseRenewal,
)
FEEDBACK = _at_zero(
    Counter("session_feedback_total", "Ratings given to answers, by rating", ["rating"]), Rating
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
AGENTS_RELEASED = _at_zero(
    Counter(
        "session_agents_released_total",
        "Agents released: by the idle sweep, an admin's cleanup, or their session's deletion",
        ["reason"],
    ),
    ReleaseReason,
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


@contextlib.contextmanager
def timed_phase(phase: Phase) -> Iterator[None]:
    """Time one phase of a turn into TURN_PHASE_SECONDS."""
    started = time.perf_counter()
    try:
        yield
    finally:
        TURN_PHASE_SECONDS.labels(phase).observe(time.perf_counter() - started)
