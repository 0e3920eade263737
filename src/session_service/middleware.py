"""ASGI middleware of our own: only what the frameworks do not do the way the API promises."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from session_service.db.contention import RERUN_PAUSES
from session_service.errors import PayloadTooLarge

log = logging.getLogger(__name__)


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


# The chat page runs only its own files: no inline script, nothing from another origin, and no
# framing (clickjacking). Swagger UI at /docs loads from a CDN, so this is for the page alone.
PAGE_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        b"frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


class PageHeaders:
    """PAGE_HEADERS on the chat page (`/`) and its files (`/static/`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == "/" or path.startswith("/static/")):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *PAGE_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


ATTEMPT = "session_service.attempt"  # its key in the request's scope
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})


@dataclass
class Attempt:
    """A request's runs under DatabaseRetry, as its handlers see them."""

    key: str = field(default_factory=lambda: uuid.uuid4().hex)  # one id for every run
    repeatable: bool = False  # a POST that does the same when run again (`repeatable`)
    again: bool = False  # this run lost its database (or a deadlock) and may run again
    doubt: bool = False  # a run's COMMIT failed: it may have happened


def run_again(scope: Scope, *, in_doubt: bool) -> None:
    """Ask for the request to run again (if it can): its transaction was undone, or (`in_doubt`)
    its commit's outcome is unknown, which only a request that does the same when repeated may
    run again: an idempotent method's, or a POST marked `repeatable`."""
    attempt: Attempt | None = scope.get(ATTEMPT)
    if attempt is not None:
        attempt.doubt |= in_doubt
        attempt.again = not in_doubt or scope["method"] in IDEMPOTENT or attempt.repeatable


def repeatable(scope: Scope) -> None:
    """This POST does the same when run again (a stop), or finds what an earlier run made
    (named by `request_key`): it may run again after a commit in doubt."""
    attempt: Attempt | None = scope.get(ATTEMPT)
    if attempt is not None:
        attempt.repeatable = True


def request_key(scope: Scope) -> str:
    """An id made once per request, the same in every run of it: the id of what it creates,
    so that a run after a commit in doubt finds that instead of making another."""
    attempt: Attempt | None = scope.get(ATTEMPT)
    if attempt is None:
        return uuid.uuid4().hex
    repeatable(scope)
    return attempt.key


class DatabaseRetry:
    """Runs a request again, at most len(RERUN_PAUSES) times, when its handler asked to
    (`run_again`) before anything was sent: the body it read is given again, and the answer of
    the failed run is dropped. A DELETE answered 404 after a run whose commit is in doubt is
    204: what it deleted is gone."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        attempt = scope[ATTEMPT] = Attempt()
        body = _Body(receive)
        for pause in (*RERUN_PAUSES, None):
            attempt.again = False
            run = _Run(scope, attempt, send, last=pause is None)
            await self.app(scope, body.again(), run.send)
            if not run.held:
                return
            log.info("running %s %s again in %ss", scope["method"], scope["path"], pause)
            await asyncio.sleep(pause or 0)


class _Body:
    """The request's messages as a run reads them, and again for the next run."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._read: list[Message] = []

    def again(self) -> Receive:
        replay = iter(list(self._read))

        async def receive() -> Message:
            message = next(replay, None)
            if message is None:
                message = await self._receive()
                if message["type"] == "http.request":
                    self._read.append(message)
            return message

        return receive


class _Run:
    """One run's answer: sent, or held back (dropped) if the request runs again."""

    def __init__(self, scope: Scope, attempt: Attempt, send: Send, *, last: bool) -> None:
        self._deleting = scope["method"] == "DELETE"
        self._attempt = attempt
        self._send = send
        self._last = last
        self.held = self._gone = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.held = self._attempt.again and not self._last
            self._gone = self._deleting and self._attempt.doubt and message["status"] == 404
            if self._gone:
                message = {**message, "status": 204, "headers": _bodiless(message)}
        elif self._gone:
            message = {**message, "body": b""}
        if not self.held:
            await self._send(message)


def _bodiless(start: Message) -> list[tuple[bytes, bytes]]:
    return [
        (name, value)
        for name, value in start.get("headers", [])
        if name.lower() not in (b"content-length", b"content-type")
    ]
