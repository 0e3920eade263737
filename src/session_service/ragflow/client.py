"""RAGFlow over one shared httpx.AsyncClient, as `shared/spec/ragflow-api.md` describes it.

Success is HTTP 2xx *and* `code == 0`; errors mostly come as HTTP 200 with a non-zero code.
Only what is safe to repeat is retried (connect errors, 502/503/504 from a proxy), within a
bounded total time.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
)

from session_service import metrics
from session_service.ragflow.models import Grounding, Reference, references_from

log = logging.getLogger(__name__)

CODE_OK = 0
CODE_DATA_ERROR = 102  # unknown session, blank name, "doesn't own" ...
CODE_AUTH = 109
RETRYABLE_STATUS = frozenset({502, 503, 504})
RETRY_ATTEMPTS = 3
RETRY_TOTAL_SECONDS = 10.0
RETRIEVAL_PAGE_SIZE = 6
SNIPPET_CHARS = 1500


class RagflowError(Exception):
    """RAGFlow failed, was unreachable, or answered something we cannot use."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class RagflowNotFound(RagflowError):
    """Code 102 for an id RAGFlow does not know (or that is not ours)."""


class RagflowAuthError(RagflowError):
    """HTTP 401 (v0.26+) or code 109 (older): the API key is wrong."""


class RagflowUnavailable(RagflowError):
    """Connection refused or dropped, a timeout, or a 5xx: worth trying again later."""


class _Retryable(RagflowUnavailable):
    pass


def new_http_client(base_url: str, api_key: str, timeout_seconds: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/") + "/api/v1",
        headers={"Authorization": f"Bearer {api_key}"},
        # RAGFlow throttles by answering slowly, so reads may take long; connecting may not.
        timeout=httpx.Timeout(timeout_seconds, connect=min(5.0, timeout_seconds)),
    )


MANAGE_TIMEOUT_SECONDS = 10.0  # creating, renaming, deleting sessions: quick or not at all


class RagflowClient:
    def __init__(self, http: httpx.AsyncClient, chat_id: str, dataset_ids: list[str]) -> None:
        self.http = http
        self.chat_id = chat_id
        self.dataset_ids = dataset_ids
        read = http.timeout.read or MANAGE_TIMEOUT_SECONDS
        self._manage_timeout = httpx.Timeout(
            min(MANAGE_TIMEOUT_SECONDS, read), connect=http.timeout.connect
        )

    async def create_session(self, name: str, user_id: str) -> str:
        data = await self._call(
            "POST",
            f"/chats/{self.chat_id}/sessions",
            {"name": name.strip() or "New chat", "user_id": user_id},
            limits=self._manage_timeout,
        )
        session_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(session_id, str) or not session_id:
            raise RagflowError("RAGFlow created a session without an id")
        return session_id

    async def rename_session(self, session_id: str, name: str) -> None:
        path = f"/chats/{self.chat_id}/sessions/{session_id}"
        body = {"name": name.strip() or "New chat"}
        try:
            await self._call("PATCH", path, body, limits=self._manage_timeout)
        except RagflowError as exc:
            if exc.code != 405:
                raise
            await self._call("PUT", path, body, limits=self._manage_timeout)  # up to v0.25

    async def delete_session(self, session_id: str) -> None:
        """Delete one mirrored session; one RAGFlow no longer knows counts as deleted."""
        if not session_id:
            # Older RAGFlow deletes *every* session of the chat for an empty or missing list.
            raise ValueError("refusing to delete without a session id")
        try:
            data = await self._call(
                "DELETE",
                f"/chats/{self.chat_id}/sessions",
                {"ids": [session_id]},
                limits=self._manage_timeout,
            )
        except RagflowNotFound:
            return
        errors = data.get("errors") if isinstance(data, dict) else None
        if errors and not all(_is_not_found(str(error)) for error in errors):
            raise RagflowError(f"RAGFlow did not delete session {session_id}: {errors}")

    async def ask(self, session_id: str, question: str, user_id: str) -> Grounding:
        """Ask the session's RAGFlow conversation; its answer and references ground ours."""
        data = await self._call(
            "POST",
            f"/chats/{self.chat_id}/completions",
            {"question": question, "stream": False, "session_id": session_id, "user_id": user_id},
        )
        if not isinstance(data, dict):
            raise RagflowError("RAGFlow answered without data")
        references = references_from(data.get("reference"))
        answer = str(data.get("answer") or "").strip()
        if answer.startswith("**ERROR**"):
            raise RagflowError(f"RAGFlow failed to answer: {answer[:200]}")
        text = f"The knowledge base's answer: {answer}" if answer else ""
        return Grounding("ragflow_chat", _with_sources(text, references), references)

    async def retrieve(self, question: str) -> Grounding:
        """Chunks of the configured datasets relevant to the question."""
        data = await self._call(
            "POST",
            "/retrieval",
            {
                "question": question,
                "dataset_ids": self.dataset_ids,
                "page": 1,
                "page_size": RETRIEVAL_PAGE_SIZE,
                "keyword": False,
                "highlight": False,
            },
        )
        references = references_from(data)
        return Grounding("retrieval", _with_sources("", references), references)

    async def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any],
        *,
        limits: httpx.Timeout | None = None,
    ) -> Any:
        """One call, retried where safe; timed and counted by operation in the metrics."""
        operation = _OPERATIONS.get((method, path.rsplit("/", 1)[-1]), "rename_session")
        started = time.perf_counter()
        try:
            data = await self._call_retrying(method, path, body, limits)
        except RagflowError as exc:
            metrics.RAGFLOW_CALL_SECONDS.labels(operation, "error").observe(
                time.perf_counter() - started
            )
            metrics.RAGFLOW_ERRORS.labels(operation, _kind(exc)).inc()
            raise
        metrics.RAGFLOW_CALL_SECONDS.labels(operation, "ok").observe(time.perf_counter() - started)
        return data

    async def _call_retrying(
        self, method: str, path: str, body: dict[str, Any], limits: httpx.Timeout | None
    ) -> Any:
        retrying = AsyncRetrying(
            retry=retry_if_exception(lambda exc: isinstance(exc, _Retryable)),
            stop=stop_after_attempt(RETRY_ATTEMPTS) | stop_after_delay(RETRY_TOTAL_SECONDS),
            wait=wait_exponential(multiplier=0.2, max=2),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._call_once(method, path, body, limits)
        except _Retryable as exc:
            raise RagflowUnavailable(str(exc), code=exc.code) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _call_once(
        self, method: str, path: str, body: dict[str, Any], limits: httpx.Timeout | None
    ) -> Any:
        try:
            response = await self.http.request(
                method, path, json=body, timeout=limits or self.http.timeout
            )
        except httpx.ConnectError as exc:
            raise _Retryable(f"RAGFlow unreachable: {exc!r}") from exc
        except httpx.TimeoutException as exc:
            raise RagflowUnavailable(f"RAGFlow timed out on {method} {path}") from exc
        except httpx.TransportError as exc:
            raise RagflowUnavailable(f"RAGFlow connection failed: {exc!r}") from exc
        if response.status_code in RETRYABLE_STATUS:
            raise _Retryable(
                f"RAGFlow answered HTTP {response.status_code}", code=response.status_code
            )
        if response.status_code == 401:
            raise RagflowAuthError("RAGFlow refused the API key (HTTP 401)", code=401)
        if response.status_code >= 500:
            raise RagflowUnavailable(f"RAGFlow answered HTTP {response.status_code}")
        if response.status_code >= 400:
            raise RagflowError(
                f"RAGFlow answered HTTP {response.status_code}", code=response.status_code
            )
        envelope = _envelope(response)
        code = envelope.get("code")
        if code == CODE_OK:
            return envelope.get("data")
        message = str(envelope.get("message") or "")
        if code == CODE_AUTH or code == 401:
            raise RagflowAuthError(f"RAGFlow refused the API key: {message}", code=code)
        if code == CODE_DATA_ERROR and _is_not_found(message):
            raise RagflowNotFound(message, code=code)
        raise RagflowError(
            f"RAGFlow error {code}: {message[:300]}", code=code if isinstance(code, int) else None
        )


_OPERATIONS = {
    ("POST", "sessions"): "create_session",
    ("DELETE", "sessions"): "delete_session",
    ("POST", "completions"): "ask",
    ("POST", "retrieval"): "retrieve",
}


def _kind(exc: RagflowError) -> str:
    if isinstance(exc, RagflowAuthError):
        return "auth"
    if isinstance(exc, RagflowNotFound):
        return "not_found"
    if isinstance(exc, RagflowUnavailable):
        return "unavailable"
    return "error"


def _envelope(response: httpx.Response) -> dict[str, Any]:
    """The `{code, data}` envelope; a stream (sent when `stream: false` was ignored) folded."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        return _fold_stream(response.text)
    try:
        envelope = response.json()
    except ValueError as exc:
        raise RagflowError("RAGFlow answered something that is not JSON") from exc
    if not isinstance(envelope, dict):
        raise RagflowError("RAGFlow answered without an envelope")
    return envelope


def _fold_stream(text: str) -> dict[str, Any]:
    """One envelope from a completion stream: v0.24+ deltas or older cumulative answers."""
    answer, reference, deltas = "", None, False
    for line in text.splitlines():
        if not line.startswith("data:"):
            continue
        try:
            event = json.loads(line[len("data:") :])
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        if event.get("code") not in (CODE_OK, None):
            return event
        data = event.get("data")
        if data is True:  # the end sentinel
            break
        if not isinstance(data, dict):
            continue
        if data.get("reference"):
            reference = data["reference"]
        piece = str(data.get("answer") or "")
        if "final" in data:
            deltas = True
        answer = answer + piece if deltas else (piece or answer)
    return {"code": CODE_OK, "data": {"answer": answer, "reference": reference}}


def _is_not_found(message: str) -> bool:
    lowered = message.lower()
    return "not found" in lowered or "doesn't own" in lowered or "don't own" in lowered


def _with_sources(text: str, references: list[Reference]) -> str:
    parts = [text] if text else []
    for index, reference in enumerate(references, start=1):
        name = reference.document_name or reference.document_id or "document"
        parts.append(f"[{index}] {name}: {reference.content[:SNIPPET_CHARS]}")
    return "\n\n".join(parts)
