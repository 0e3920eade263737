"""ASGI middleware of our own: only what the frameworks do not do the way the API promises."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from session_service.errors import PayloadTooLarge


class BodyLimit:
    """413 with a JSON `detail` for a body over `max_bytes`: at once when its Content-Length
    says so, or as soon as a body sent without one grows past it. (Starlette's own limit
    answers in plain text.)"""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            await JSONResponse(
                {"detail": self._detail, "code": PayloadTooLarge.code}, status_code=413
            )(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413, self._detail)  # rendered by the app's handler
            return message

        await self.app(scope, limited, send)

    @property
    def _detail(self) -> str:
        return f"the body is over {self.max_bytes} bytes"
