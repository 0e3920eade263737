"""The database goes away behind a TCP proxy and comes back: 503s with a detail, never a
hang or a 500, no LLM call for a question that could not be stored, and recovery without a
restart."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from session_service.config import Settings
from tests.conftest import serve_app
from tests.fakes.openai import FakeLLM
from tests.fakes.tcp_proxy import TcpProxy
from tests.helpers import Headers, stored


@pytest.fixture
async def client(
    llm_settings: Callable[..., Settings], proxied_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    settings = llm_settings(
        database_url=proxied_url,
        db_connect_timeout_seconds=1,
        db_pool_timeout_seconds=2,
    )
    async with serve_app(settings) as app_client:
        yield app_client


def calls(session_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    path = f"/api/sessions/{session_id}"
    return [
        ("POST", "/api/sessions", {}),
        ("GET", "/api/sessions", None),
        ("GET", path, None),
        ("PATCH", path, {"title": "renamed"}),
        ("GET", f"{path}/messages", None),
        ("POST", f"{path}/messages", {"content": "lost?"}),
        ("POST", f"{path}/messages", {"content": "lost?", "stream": True}),
        ("DELETE", path, None),
    ]


@pytest.mark.parametrize("mode", ["refuse", "silent"])
async def test_database_outage_and_recovery(
    client: httpx.AsyncClient,
    proxy: TcpProxy,
    fake_llm: FakeLLM,
    alice: Headers,
    db: async_sessionmaker[AsyncSession],
    mode: str,
) -> None:
    session_id = (await client.post("/api/sessions", json={}, headers=alice)).json()["session_id"]
    first = await client.post(
        f"/api/sessions/{session_id}/messages", json={"content": "before"}, headers=alice
    )
    assert first.status_code == 201
    llm_calls = len(fake_llm.calls)

    proxy.cut(mode)
    started = time.monotonic()
    ready = await client.get("/health/ready")
    assert ready.status_code == 503
    assert time.monotonic() - started < 5
    assert (await client.get("/health/live")).status_code == 200
    for method, path, body in calls(session_id):
        started = time.monotonic()
        response = await client.request(method, path, json=body, headers=alice)
        took = time.monotonic() - started
        assert response.status_code == 503, (method, path, response.text)
        assert "database" in response.json()["detail"]
        assert took < 5, (method, path, took)
    assert len(fake_llm.calls) == llm_calls  # no LLM call for a question not stored

    proxy.restore()
    deadline = time.monotonic() + 10
    while (await client.get("/health/ready")).status_code != 200:
        assert time.monotonic() < deadline, "not ready again after the database came back"
    after = await client.post(
        f"/api/sessions/{session_id}/messages", json={"content": "after"}, headers=alice
    )
    assert after.status_code == 201
    assert [r[1:] for r in await stored(db, session_id)] == [
        ("user", "before"),
        ("assistant", "echo: before"),
        ("user", "after"),
        ("assistant", "echo: after"),
    ]
    conversation = [m["content"] for m in fake_llm.calls[-1]["messages"][1:]]
    assert conversation == ["before", "echo: before", "after"]
