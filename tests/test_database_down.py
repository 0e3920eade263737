"""An unreachable database answers 503 with a detail, never a 500 or a hang."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Callable

import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient

from session_service.config import Settings
from session_service.main import create_app
from tests.helpers import auth


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def down_client(make_settings: Callable[..., Settings]) -> AsyncIterator[AsyncClient]:
    url = f"mysql+aiomysql://root@127.0.0.1:{_closed_port()}/nothing"
    app = create_app(make_settings(database_url=url, db_connect_timeout_seconds=1))
    async with (
        LifespanManager(app) as manager,
        AsyncClient(transport=ASGITransport(app=manager.app), base_url="http://test") as client,
    ):
        yield client


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/sessions"),
        ("GET", "/api/sessions"),
        ("GET", "/api/sessions/abc"),
        ("PATCH", "/api/sessions/abc"),
        ("DELETE", "/api/sessions/abc"),
        ("GET", "/api/sessions/abc/messages"),
    ],
)
async def test_api_answers_503(down_client: AsyncClient, method: str, path: str) -> None:
    started = time.monotonic()
    response = await down_client.request(
        method, path, headers=auth("u1"), json={} if method in ("POST", "PATCH") else None
    )
    assert response.status_code == 503
    assert "database" in response.json()["detail"]
    assert time.monotonic() - started < 10


async def test_readiness_fails_liveness_holds(down_client: AsyncClient) -> None:
    ready = await down_client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"
    assert (await down_client.get("/health/live")).status_code == 200
