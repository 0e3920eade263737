"""Small helpers shared by the tests."""

from __future__ import annotations

from session_service.auth import mint_token

JWT_SECRET = "test-secret-" + "x" * 32


def auth(user_id: str, *, admin: bool = False, ttl: int = 3600) -> dict[str, str]:
    token = mint_token(JWT_SECRET, user_id, admin=admin, ttl_seconds=ttl)
    return {"Authorization": f"Bearer {token}"}
