"""A fake RAGFlow HTTP API that behaves as shared/spec/ragflow-api.md says, traps included.

Errors come as HTTP 200 envelopes with a non-zero code; a bad key answers HTTP 401 (v0.26+)
or code 109 (older); unknown sessions are code 102; a DELETE without ids wipes every session
of the chat (as RAGFlow up to v0.24 does); completions stream unless told `stream: false`.
Knobs: `fail` ("500", "502", "code100", "drop", "slow") for every request, or `fail_next`
requests only; `slow_seconds`; `auth_style`; `ignore_stream_flag` and `stream_style`; `version`.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from tests.fakes.http import DropConnection, FakeServer, Reply, Request, Stream

API_KEY = "ragflow-test-key"
CHAT_ID = "chat0000000000000000000000000001"
CHUNKS = [
    {
        "id": "chunk-paris",
        "content": "Paris is the capital of France.",
        "document_id": "doc-geo",
        "document_name": "geography.pdf",
        "document_keyword": "geography.pdf",
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
        "document_keyword": "rivers.md",
        "dataset_id": "ds-2",
        "similarity": 0.74,
        "vector_similarity": 0.7,
        "term_similarity": 0.8,
    },
]
SESSION_PATH = re.compile(r"^/api/v1/chats/([^/]+)/sessions(?:/([^/?]+))?$")
COMPLETIONS_PATH = re.compile(r"^/api/v1/chats/([^/]+)/completions$")


def envelope(code: int, message: str = "", data: Any = None) -> Reply:
    return Reply(200, {"code": code, "message": message, "data": data})


class FakeRagflow:
    def __init__(self) -> None:
        self.sessions: dict[str, dict[str, Any]] = {}
        self.fail: str | None = None
        self.fail_next = 0
        self.fail_next_mode = "502"
        self.slow_seconds = 2.0
        self.auth_style = "401"  # "401" (v0.26+) or "109" (older)
        self.version = (0, 27)
        self.ignore_stream_flag = False
        self.stream_style = "delta"  # "delta" (v0.24+) or "cumulative" (older)
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
            return envelope(100, "Exception('the fake was told to fail')")
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            if self.auth_style == "401":
                return Reply(
                    401, {"code": 401, "message": "Authentication error: API key is invalid!"}
                )
            return envelope(109, "Authentication error: API key is invalid!")
        path = request.path.split("?", 1)[0]
        if match := SESSION_PATH.match(path):
            return self._sessions(request, match.group(1), match.group(2))
        if match := COMPLETIONS_PATH.match(path):
            return self._completion(request, match.group(1))
        if path == "/api/v1/retrieval" and request.method == "POST":
            return self._retrieval(request)
        return Reply(404, {"code": 404, "message": "Not found"})

    def _sessions(self, request: Request, chat_id: str, session_id: str | None) -> Reply:
        body = request.json if request.body else None
        if request.method == "POST" and session_id is None:
            name = (body or {}).get("name", "")
            if not str(name).strip():
                return envelope(102, "`name` can not be empty.")
            created = {
                "id": uuid.uuid4().hex,
                "chat_id": chat_id,
                "name": name,
                "messages": [{"role": "assistant", "content": "Hi! I'm your assistant."}],
                "create_time": int(time.time() * 1000),
            }
            self.sessions[created["id"]] = created
            return envelope(0, data=created)
        if session_id is not None and request.method in ("PATCH", "PUT"):
            wanted = "PATCH" if self.version >= (0, 26) else "PUT"
            if request.method != wanted:
                return Reply(405, b"Method Not Allowed", "text/html")
            if session_id not in self.sessions:
                return envelope(102, "Session does not exist")
            self.sessions[session_id]["name"] = (body or {}).get("name")
            return envelope(0)
        if request.method == "DELETE" and session_id is None:
            ids = (body or {}).get("ids")
            if not ids:
                # RAGFlow up to v0.24: no ids means every session of the chat.
                self.wiped = True
                self.sessions = {k: v for k, v in self.sessions.items() if v["chat_id"] != chat_id}
                return envelope(0)
            errors = []
            for one in ids:
                if self.sessions.get(one, {}).get("chat_id") == chat_id:
                    del self.sessions[one]
                else:
                    errors.append(f"The chat doesn't own the session {one}")
            if errors and len(errors) == len(ids):
                return envelope(102, "; ".join(errors))
            if errors:
                return envelope(0, data={"success_count": len(ids) - len(errors), "errors": errors})
            return envelope(0)
        return Reply(405, b"Method Not Allowed", "text/html")

    def _completion(self, request: Request, chat_id: str) -> Reply | Stream:
        body = request.json or {}
        session_id = body.get("session_id")
        question = str(body.get("question", ""))
        if session_id is None:
            return envelope(0, data={"answer": "Hi! I'm your assistant.", "reference": {}})
        if self.sessions.get(session_id, {}).get("chat_id") != chat_id:
            return envelope(102, f"You don't own the session {session_id}")
        answer = f"Paris, according to the documents [ID:0]. You asked: {question}"
        reference = {"total": len(CHUNKS), "chunks": CHUNKS, "doc_aggs": _aggs()}
        if body.get("stream", True) or self.ignore_stream_flag:
            return Stream(self._stream(answer, reference, session_id))
        return envelope(
            0,
            data={
                "answer": answer,
                "reference": reference,
                "prompt": "...",
                "created_at": time.time(),
                "id": uuid.uuid4().hex,
                "session_id": session_id,
            },
        )

    async def _stream(
        self, answer: str, reference: dict[str, Any], session_id: str
    ) -> AsyncIterator[bytes]:
        def event(data: Any) -> bytes:
            return f"data:{json.dumps({'code': 0, 'message': '', 'data': data})}\n\n".encode()

        words = answer.split(" ")
        sent = ""
        for index, word in enumerate(words):
            piece = word if index == 0 else " " + word
            sent += piece
            shown = piece if self.stream_style == "delta" else sent
            payload: dict[str, Any] = {"answer": shown, "reference": {}, "session_id": session_id}
            if self.stream_style == "delta":
                payload["final"] = False
            yield event(payload)
        if self.stream_style == "delta":
            yield event({"answer": "", "reference": reference, "final": True})
        else:
            yield event({"answer": sent, "reference": reference})
        yield event(True)

    def _retrieval(self, request: Request) -> Reply:
        body = request.json or {}
        if not body.get("dataset_ids"):
            return envelope(102, "`dataset_ids` is required.")
        chunks = [c for c in CHUNKS if c["dataset_id"] in body["dataset_ids"]]
        return envelope(0, data={"chunks": chunks, "doc_aggs": _aggs(), "total": len(chunks)})


def _aggs() -> list[dict[str, Any]]:
    return [
        {"doc_name": c["document_name"], "doc_id": c["document_id"], "count": 1} for c in CHUNKS
    ]
