"""The service's error family: each error carries its HTTP status and a machine `code`; one
handler renders it as `{"detail", "code"}`."""

from __future__ import annotations

from collections.abc import Mapping


class ServiceError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(self, detail: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = dict(headers or {})


class Unauthorized(ServiceError):
    status_code = 401
    code = "unauthorized"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ServiceError):
    status_code = 403
    code = "forbidden"


class NotFound(ServiceError):
    status_code = 404
    code = "not_found"


class InvalidInput(ServiceError):
    status_code = 422
    code = "invalid_input"


class Conflict(ServiceError):
    status_code = 409
    code = "conflict"


class DatabaseUnavailable(ServiceError):
    status_code = 503
    code = "database_unavailable"


class PayloadTooLarge(ServiceError):
    status_code = 413
    code = "payload_too_large"


class UpstreamFailed(ServiceError):
    status_code = 502
    code = "upstream_failed"


class UpstreamTimeout(ServiceError):
    status_code = 504
    code = "upstream_timeout"


class SessionNotFound(NotFound):
    """The same answer for an unknown session and someone else's: no existence leak."""

    code = "session_not_found"

    def __init__(self) -> None:
        super().__init__("Session not found")


class SessionBusy(Conflict):
    """Another turn holds the session's turn lock (and this one would not, or could no
    longer, wait)."""

    code = "session_busy"

    def __init__(
        self, detail: str = "another turn is running on this session; try again when it ends"
    ) -> None:
        super().__init__(detail)


class StopPending(ServiceError):
    """The replica generating a reply did not store it, stopped, in time."""

    status_code = 503
    code = "stop_pending"

    def __init__(self) -> None:
        super().__init__(
            "the reply was asked to stop but its replica has not stored it yet; ask again"
        )
