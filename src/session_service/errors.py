"""The service's error family: each error carries its HTTP status; one handler renders it."""

from __future__ import annotations

from collections.abc import Mapping


class ServiceError(Exception):
    status_code = 500

    def __init__(self, detail: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = dict(headers or {})


class Unauthorized(ServiceError):
    status_code = 401

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ServiceError):
    status_code = 403


class NotFound(ServiceError):
    status_code = 404


class InvalidInput(ServiceError):
    status_code = 422


class Conflict(ServiceError):
    status_code = 409


class DatabaseUnavailable(ServiceError):
    status_code = 503


class PayloadTooLarge(ServiceError):
    status_code = 413


class UpstreamFailed(ServiceError):
    status_code = 502


class UpstreamTimeout(ServiceError):
    status_code = 504


class SessionNotFound(NotFound):
    """The same answer for an unknown session and someone else's: no existence leak."""

    def __init__(self) -> None:
        super().__init__("Session not found")


class SessionBusy(Conflict):
    """Another turn holds the session's turn lock (and this one would not, or could no
    longer, wait)."""

    def __init__(self) -> None:
        super().__init__("another turn is running on this session; try again when it ends")
