"""The error answers routes declare in the OpenAPI document, each written once."""

from __future__ import annotations

from typing import Any

from session_service.api.schemas import ErrorBody

Responses = dict[int | str, dict[str, Any]]


def error(status: int, description: str) -> Responses:
    return {status: {"model": ErrorBody, "description": description}}


UNAUTHORIZED = error(401, "Missing, invalid or expired token")
ADMINS_ONLY = error(403, "Admins only")
SESSION_NOT_FOUND = error(404, "Unknown session, or not yours")
DATABASE_DOWN = error(503, "The database is unreachable")
USER_ROUTE = UNAUTHORIZED | DATABASE_DOWN
ADMIN_ROUTE = USER_ROUTE | ADMINS_ONLY
