"""Auth as api.md says: HS256 JWT, 401 for a missing/bad/expired token, dev mode."""

from __future__ import annotations

import time
from collections.abc import Callable

import jwt
import pytest
from asgi_lifespan import LifespanManager
from httpx import ASGITransport, AsyncClient

from session_service.config import Settings
from session_service.main import create_app
from tests.helpers import JWT_SECRET, auth


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer not-a-jwt"},
        {
            "Authorization": "Bearer "
            + jwt.encode({"sub": "eve"}, "another-secret-" + "y" * 32, "HS256")
        },
        {"Authorization": "Bearer " + jwt.encode({"scope": "admin"}, JWT_SECRET, "HS256")},
        {"Authorization": "Bearer " + jwt.encode({"sub": ""}, JWT_SECRET, "HS256")},
        {"Authorization": "Bearer " + jwt.encode({"sub": 42}, JWT_SECRET, "HS256")},
        {
            "Authorization": "Bearer "
            + jwt.encode({"sub": "eve", "exp": int(time.time()) - 60}, JWT_SECRET, "HS256")
        },
        # "none" algorithm tokens must never pass
        {"Authorization": "Bearer " + jwt.encode({"sub": "eve"}, None, "none")},
    ],
)
async def test_requests_without_a_valid_token_get_401(
    client: AsyncClient, headers: dict[str, str]
) -> None:
    for method, path in [
        ("GET", "/api/sessions"),
        ("POST", "/api/sessions"),
        ("GET", "/api/sessions/x"),
    ]:
        response = await client.request(
            method, path, headers=headers, json={} if method == "POST" else None
        )
        assert response.status_code == 401, (method, path, response.text)
        assert response.json()["detail"]
        assert response.headers["www-authenticate"] == "Bearer"


async def test_expired_token_says_so(client: AsyncClient) -> None:
    response = await client.get("/api/sessions", headers=auth("eve", ttl=-10))
    assert response.status_code == 401
    assert response.json() == {"detail": "token expired"}


async def test_token_subject_is_the_user(client: AsyncClient) -> None:
    created = await client.post("/api/sessions", json={}, headers=auth("carol-42"))
    assert created.json()["user_id"] == "carol-42"


async def test_health_needs_no_token(client: AsyncClient) -> None:
    assert (await client.get("/health/live")).status_code == 200
    assert (await client.get("/health/ready")).status_code == 200


async def test_development_mode_acts_as_admin_dev(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(make_settings(auth_jwt_secret=None))
    async with (
        LifespanManager(app) as manager,
        AsyncClient(transport=ASGITransport(app=manager.app), base_url="http://test") as client,
    ):
        created = await client.post(
            "/api/sessions", json={}, headers={"Authorization": "Bearer junk"}
        )
        assert created.status_code == 201
        assert created.json()["user_id"] == "dev"
    assert any("DEVELOPMENT MODE" in record.getMessage() for record in caplog.records)
