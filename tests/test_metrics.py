"""GET /metrics in Prometheus text format, with the figures operators need."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from session_service import metrics
from session_service.config import Settings
from tests.conftest import serve_app
from tests.fakes.openai import FakeLLM
from tests.fakes.ragflow import FakeRagflow
from tests.helpers import auth
from tests.processes import serving


def sample(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for metric in family.samples:
            if metric.name == name and all(metric.labels.get(k) == v for k, v in labels.items()):
                total += metric.value
    return total


async def test_metrics_cover_requests_turns_upstreams_and_pools(
    ragflow_settings: Callable[..., Settings], fake_llm: FakeLLM, fake_ragflow: FakeRagflow
) -> None:
    alice = auth("alice-metrics")
    admin = auth("metrics-admin", admin=True)
    settings = ragflow_settings(agent_pool_max_size=7, agent_cleanup_interval_seconds=0.05)
    async with serve_app(settings) as client:
        before = (await client.get("/metrics")).text
        session_id = (await client.post("/api/sessions", json={}, headers=alice)).json()[
            "session_id"
        ]
        await client.post(
            f"/api/sessions/{session_id}/messages", json={"content": "hi"}, headers=alice
        )
        fake_llm.fail_status = 500
        await client.post(
            f"/api/sessions/{session_id}/messages", json={"content": "x"}, headers=alice
        )
        fake_llm.fail_status = None
        doomed = (await client.post("/api/sessions", json={}, headers=alice)).json()
        await client.delete(f"/api/sessions/{doomed['session_id']}", headers=alice)
        await client.post("/api/sessions/cleanup", json={"max_age_seconds": 0}, headers=admin)
        await asyncio.sleep(0.2)  # a few background sweeps
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    route = "/api/sessions/{session_id}/messages"
    assert (
        sample(text, "http_requests_total", handler=route, status="2xx")
        - sample(before, "http_requests_total", handler=route, status="2xx")
        == 1
    )
    assert sample(text, "http_requests_total", handler=route, status="5xx") >= 1
    assert sample(text, "http_request_duration_seconds_count", handler=route) >= 2
    for phase in ("database", "grounding", "llm"):
        assert sample(text, "session_turn_phase_seconds_count", phase=phase) >= 1, phase
    assert sample(text, "session_llm_call_seconds_count", outcome="ok") >= 1
    assert sample(text, "session_llm_errors_total", kind="http_status") >= 1
    assert sample(text, "session_ragflow_call_seconds_count", operation="ask", outcome="ok") >= 1
    assert sample(text, "session_ragflow_call_seconds_count", operation="create_session") >= 1
    assert sample(text, "session_agents_max") == 7
    assert sample(text, "session_agents_created_total") >= 1
    released = "session_agents_released_total"
    assert sample(text, released, reason="manual") - sample(before, released, reason="manual") >= 1
    assert (
        sample(text, released, reason="deleted") - sample(before, released, reason="deleted") == 1
    )
    assert sample(text, "session_agent_sweep_seconds_count") > sample(
        before, "session_agent_sweep_seconds_count"
    )
    assert re.search(r"^session_db_pool_connections_open \d", text, re.MULTILINE)
    assert re.search(r"^session_agents_active \d", text, re.MULTILINE)


def test_metrics_add_up_across_workers(tmp_path: Path) -> None:
    """`serve --workers 2` shares metrics between its processes: any worker's /metrics counts
    the requests every worker answered."""
    with serving(tmp_path, "--workers", "2") as server, httpx.Client(base_url=server.base) as http:
        before = sample(http.get("/metrics").text, "http_requests_total", handler="/health/live")
        for _ in range(40):  # new connections each time, so both workers answer some
            assert httpx.get(f"{server.base}/health/live").status_code == 200
        after = sample(http.get("/metrics").text, "http_requests_total", handler="/health/live")
    assert after - before == 40


def labelled(**values: tuple[str, ...]) -> set[frozenset[tuple[str, str]]]:
    """The label sets of every combination of the given values."""
    return {
        frozenset(zip(values, combination, strict=True))
        for combination in itertools.product(*values.values())
    }


RAGFLOW_OPERATIONS = (
    "create_session",
    "list_sessions",
    "rename_session",
    "delete_session",
    "ask",
    "retrieve",
)
KNOWN_SERIES = {
    "session_turn_phase_seconds_count": labelled(phase=("database", "grounding", "llm")),
    "session_llm_call_seconds_count": labelled(outcome=("ok", "error", "stopped")),
    "session_llm_errors_total": labelled(kind=("timeout", "http_status", "connection", "other")),
    "session_ragflow_call_seconds_count": labelled(
        operation=RAGFLOW_OPERATIONS, outcome=("ok", "error")
    ),
    "session_ragflow_errors_total": labelled(
        operation=RAGFLOW_OPERATIONS,
        kind=(
            "auth",
            "chat_forbidden",
            "not_found",
            "route_missing",
            "unsupported",
            "unavailable",
            "error",
        ),
    ),
    "session_agents_released_total": labelled(reason=("idle", "manual", "deleted")),
    "session_turn_lease_renewals_total": labelled(outcome=("renewed", "failed", "lost")),
    "session_feedback_total": labelled(rating=("up", "down")),
}


@pytest.mark.parametrize("workers", ["1", "2"])
def test_every_family_and_known_series_is_exported_from_the_start(
    tmp_path: Path, workers: str
) -> None:
    """A fresh service (no turn, no RAGFlow, no release yet) lists every family of metrics.py,
    and every labelled family with each known label value, at zero."""
    with serving(tmp_path, "--workers", workers) as server:
        text = httpx.get(f"{server.base}/metrics").text
    exported = list(text_string_to_metric_families(text))
    families = {
        described.name
        for family in vars(metrics).values()
        if isinstance(family, MetricWrapperBase)
        for described in family.describe()
    }
    assert len(families) == 19
    assert families <= {family.name for family in exported}
    for name, known in KNOWN_SERIES.items():
        series = {
            frozenset(sample.labels.items()): sample.value
            for family in exported
            for sample in family.samples
            if sample.name == name
        }
        assert series == dict.fromkeys(known, 0.0), name


async def test_a_long_turn_renews_its_lease_and_says_so(
    llm_settings: Callable[..., Settings], fake_llm: FakeLLM
) -> None:
    """A lease of 1 s is renewed every third of it while a 1.2 s reply is generated."""
    fake_llm.delay = 1.2
    headers = auth("renewals")
    async with serve_app(llm_settings(turn_lock_lease_seconds=1)) as client:
        created = await client.post("/api/sessions", json={}, headers=headers)
        before = (await client.get("/metrics")).text
        answer = await client.post(
            f"/api/sessions/{created.json()['session_id']}/messages",
            json={"content": "slow"},
            headers=headers,
        )
        after = (await client.get("/metrics")).text
    assert answer.status_code == 201
    renewed = "session_turn_lease_renewals_total"
    assert (
        sample(after, renewed, outcome="renewed") - sample(before, renewed, outcome="renewed") >= 2
    )
    assert sample(after, renewed, outcome="failed") == sample(before, renewed, outcome="failed")
