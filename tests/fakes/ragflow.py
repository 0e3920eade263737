"""A fake RAGFlow HTTP API that answers as the real server does, per version (docs/ragflow.md).

Errors are HTTP 200 envelopes with a non-zero code; a wrong method is HTTP 200 code 100, never
a 405; an unknown route is a 404. What differs by version: ragflow_wire.py (versions, routes,
envelopes, wordings, chunk shapes), ragflow_sessions.py (the session routes) and
ragflow_answers.py (completions and retrieval).

Knobs (attributes a test sets):
- `version`: (0, 24, 0), (0, 25, 0), (0, 25, 1), (0, 25, 6) or (0, 27, 0) (the default);
  (0, 27) means (0, 27, 0).
- `fail`: "500", "502", "503", "504" (an HTML error page), "code100" (HTTP 200, code 100),
  "drop" (the connection closed) or "slow" (answered after `slow_seconds`), for every request;
  or for the next `fail_next` requests only, as `fail_next_mode` (default "502").
- `auth_style`: None (default: the version's answer to a bad key on that route), or forced:
  "401" (HTTP 401 code 401), "109" (HTTP 200 code 109, as v0.24.0) or "401/109" (HTTP 401
  code 109, as v0.25's token_required routes).
- `owned_chats` / `owned_datasets`: what the key's tenant owns ({CHAT_ID} / {"ds-1", "ds-2"}).
- `chunks`: what every chat retrieves, and what retrieval searches (a copy of CHUNKS).
- `ignore_stream_flag`: stream even when asked `stream: false`; `stream_style`: "delta"
  (default; the final event's answer as the version has it) or "cumulative" (before v0.24).
- `nan_similarity`: the first chunk has a NaN `similarity`, written as a bare `NaN` (completions
  turn it into null from v0.26.0).
State and helpers: `sessions` (id -> session with its `chat_id`, every chat), `sessions_of(chat)`,
`add_chat(chat, owned=True)`, `add_session(chat, name)`, `wiped` (a delete removed every session
of a chat), `calls(method, contains)`, `completions_routes_used()`, `server.requests`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qsl

from tests.fakes import ragflow_wire as wire
from tests.fakes.http import DropConnection, FakeServer, Reply, Request, Stream
from tests.fakes.ragflow_answers import AnswerRoutes
from tests.fakes.ragflow_wire import PROLOGUE, TENANT_ID, crash

__all__ = ["API_KEY", "CHAT_ID", "CHUNKS", "PROLOGUE", "TENANT_ID", "FakeRagflow"]

API_KEY = "ragflow-test-key"
CHAT_ID = "chat0000000000000000000000000001"
# What the chat retrieves. Its answer cites [ID:0] only: `reference.chunks` holds both chunks,
# `doc_aggs` only geography.pdf. Retrieval shows `document_name` as `document_keyword`.
CHUNKS: list[dict[str, Any]] = [
    {
        "id": "chunk-paris",
        "content": "Paris is the capital of France.",
        "document_id": "doc-geo",
        "document_name": "geography.pdf",
        "dataset_id": "ds-1",
        "similarity": 0.91,
        "vector_similarity": 0.88,
        "term_similarity": 0.95,
    },
    {
        "id": "chunk-seine",
        "content": "The Seine flows through Paris.",
        "document_id": "doc-rivers",
        "document_name": "rivers.md",
        "dataset_id": "ds-2",
        "similarity": 0.74,
        "vector_similarity": 0.7,
        "term_similarity": 0.8,
    },
]


class FakeRagflow(AnswerRoutes):
    """The server, its state and knobs; the routes are in `AnswerRoutes` and `SessionRoutes`."""

    def __init__(self) -> None:
        self.version: tuple[int, ...] = wire.V27
        self.sessions: dict[str, dict[str, Any]] = {}
        self.owned_chats: set[str] = {CHAT_ID}
        self.owned_datasets: set[str] = {"ds-1", "ds-2"}
        self.chunks = [dict(chunk) for chunk in CHUNKS]
        self.fail: str | None = None
        self.fail_next = 0
        self.fail_next_mode = "502"
        self.slow_seconds = 2.0
        self.auth_style: str | None = None
        self.ignore_stream_flag = False
        self.stream_style = "delta"
        self.nan_similarity = False
        self.wiped = False
        self.server = FakeServer(self._handle)

    def start(self) -> FakeRagflow:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url

    def calls(self, method: str | None = None, contains: str = "") -> list[Request]:
        return [
            r
            for r in self.server.requests
            if (method is None or r.method == method) and contains in r.path
        ]

    def completions_routes_used(self) -> list[str]:
        """Per completion call, in order: "new" (/chat/completions) or "old" (/chats/{id}/…)."""
        return [
            "new" if r.path.startswith("/api/v1/chat/") else "old"
            for r in self.calls("POST", "/completions")
        ]

    def add_chat(self, chat_id: str, *, owned: bool = True) -> str:
        """A chat of this key's tenant, or (owned=False) of another one."""
        (self.owned_chats.add if owned else self.owned_chats.discard)(chat_id)
        return chat_id

    def add_session(self, chat_id: str = CHAT_ID, name: str = "New session") -> str:
        """A session made behind the API's back, in any chat (also one the key cannot use)."""
        return str(self._new_session(chat_id, name, "")["id"])

    def sessions_of(self, chat_id: str = CHAT_ID) -> dict[str, dict[str, Any]]:
        """The sessions of one chat, by id (`sessions` holds those of every chat)."""
        return super().sessions_of(chat_id)

    async def _handle(self, request: Request) -> Reply | Stream:
        mode = self.fail
        if self.fail_next > 0:
            self.fail_next -= 1
            mode = self.fail_next_mode
        if mode == "slow":
            await asyncio.sleep(self.slow_seconds)
        elif mode == "drop":
            raise DropConnection
        elif mode in ("500", "502", "503", "504"):
            return Reply(int(mode), b"<html>upstream error</html>", "text/html")
        elif mode == "code100":
            return crash("Exception('the fake was told to fail')")
        v, (path, _, query) = self.v, request.path.partition("?")
        found = next(((r, m) for p, r in wire.ROUTES if (m := p.match(path))), None)
        if found is None:
            return wire.not_found(path)
        route, match = found
        allowed = wire.methods(route, v)
        if not allowed:
            return wire.not_found(path)
        if request.method not in allowed:
            return crash(wire.METHOD_NOT_ALLOWED)
        authorization = request.headers.get("authorization", "")
        if wire.presented_key(authorization, route, v) != API_KEY:
            return wire.refuse_key(route, v, authorization, self.auth_style)
        if route == "session" and request.method == "PUT" and wire.V25_1 <= v < wire.V25_2:
            return crash(wire.PUT_BROKEN)
        if request.method == "GET":
            body: dict[str, Any] = dict(parse_qsl(query))
        else:
            try:
                body = json.loads(request.body) if request.body else {}
            except ValueError:
                if route == "sessions" and request.method == "DELETE" and v >= wire.V27:
                    return wire.json_result(None, 101, wire.MALFORMED_JSON)
                return crash(wire.BAD_JSON)
            if not isinstance(body, dict):
                return crash(wire.NOT_AN_OBJECT)
        try:
            answer: Reply | Stream = getattr(self, f"_{route}_{request.method.lower()}")(
                body, *match.groups()
            )
        except Exception as exc:  # what RAGFlow's catch-all does with it
            return crash(repr(exc))
        return answer
