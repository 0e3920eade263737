"""CORS_ALLOW_ORIGINS: a front-end on another origin may call the API; no other origin may."""

from __future__ import annotations

from collections.abc import Callable

from session_service.config import Settings
from tests.conftest import serve_app
from tests.helpers import auth

APP = "https://chat.example.com"
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization,content-type",
}


async def test_a_listed_origin_passes_the_preflight_and_reads_answers(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(cors_allow_origins=f"{APP}, http://localhost:5173")
    assert settings.cors_allow_origins == [APP, "http://localhost:5173"]
    async with serve_app(settings) as client:
        preflight = await client.options("/api/sessions", headers={"Origin": APP, **PREFLIGHT})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == APP
        assert preflight.headers["x-request-id"]
        assert "POST" in preflight.headers["access-control-allow-methods"]
        allowed = preflight.headers["access-control-allow-headers"].lower()
        assert {"authorization", "content-type"} <= set(allowed.replace(" ", "").split(","))

        created = await client.post(
            "/api/sessions", json={}, headers={"Origin": APP, **auth("cors-user")}
        )
        assert created.status_code == 201
        assert created.headers["access-control-allow-origin"] == APP
        assert "x-request-id" in created.headers["access-control-expose-headers"].lower()

        stranger = await client.options(
            "/api/sessions", headers={"Origin": "https://evil.example", **PREFLIGHT}
        )
        assert stranger.status_code == 400
        assert "access-control-allow-origin" not in stranger.headers


async def test_no_origin_is_allowed_by_default(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    assert settings.cors_allow_origins == []
    async with serve_app(settings) as client:
        preflight = await client.options("/api/sessions", headers={"Origin": APP, **PREFLIGHT})
        assert "access-control-allow-origin" not in preflight.headers
        read = await client.get("/api/sessions", headers={"Origin": APP, **auth("cors-user")})
        assert read.status_code == 200
        assert "access-control-allow-origin" not in read.headers
