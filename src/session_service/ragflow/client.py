"""RAGFlow over one shared httpx.AsyncClient, as its server behaves from v0.24 to v0.27
(docs/ragflow.md).

Success is HTTP 2xx *and* `code == 0`; errors mostly come as HTTP 200 with a non-zero code,
whose meaning `ragflow.errors` decides. Only calls that are safe to repeat (retrieval, rename,
delete by id) are retried, on connect errors and 502/503/504 from a proxy, within a bounded
total time: a repeated create would make a session no one deletes, and a repeated completion
would ask (and pay) twice.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import quote

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
)

from session_service import metrics
from session_service.ragflow.envelope import envelope_of
from session_service.ragflow.errors import (
    CODE_OK,
    RagflowAuthError,
    RagflowError,
    RagflowMethodNotAllowed,
    RagflowNotFound,
    RagflowRouteMissing,
    RagflowUnavailable,
    error_for,
    error_kind,
)
from session_service.ragflow.models import (
    Grounding,
    cited_indices,
    references_from,
    with_sources,
)

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({502, 503, 504})
RETRY_ATTEMPTS = 3
RETRY_TOTAL_SECONDS = 10.0
RETRIEVAL_PAGE_SIZE = 6
NAME_CHARS = 255  # RAGFlow's column (v0.24 stores the name as sent; v0.25+ cuts it there)
ROUTE_RECHECK_SECONDS = 600.0


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
        # v0.25.1+ has POST /chat/completions; older servers only the deprecated route. A 404
        # there sends asks to the old route for a while, then the current one is tried again
        # (the server may be upgraded, or the 404 came from a proxy mid-redeploy).
        self._old_route_until = 0.0

    async def create_session(self, name: str, user_id: str) -> str:
        """A new session of the current chat. Not retried: a create whose answer was lost may
        have made a session, and a second one would never be deleted."""
        data = await self._call(
            "POST",
            f"/chats/{self.chat_id}/sessions",
            {"name": _name(name), "user_id": user_id},
            limits=self._manage_timeout,
        )
        session_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(session_id, str) or not session_id:
            raise RagflowError("RAGFlow created a session without an id")
        return session_id

    async def sessions_named(self, name: str) -> list[tuple[str, int]]:
        """(id, created at in epoch ms) of the current chat's sessions named as a mirror of a
        session titled `name` would be, newest first."""
        data = await self._call(
            "GET",
            f"/chats/{self.chat_id}/sessions?name={quote(_name(name))}"
            "&page=1&page_size=30&orderby=create_time&desc=true",
            {},
            limits=self._manage_timeout,
            retry=True,
        )
        found = data if isinstance(data, list) else []
        return [
            (one["id"], int(one.get("create_time") or 0))
            for one in found
            if isinstance(one, dict) and isinstance(one.get("id"), str)
        ]

    async def rename_session(self, session_id: str, name: str, chat_id: str) -> None:
        """PATCH (v0.25.1+), or PUT where the server has no PATCH: it answers code 100
        `<MethodNotAllowed ...>`, never HTTP 405 (v0.24, v0.25.0)."""
        path = f"/chats/{chat_id}/sessions/{session_id}"
        body = {"name": _name(name)}
        try:
            await self._call("PATCH", path, body, limits=self._manage_timeout, retry=True)
        except RagflowMethodNotAllowed:
            await self._call("PUT", path, body, limits=self._manage_timeout, retry=True)

    async def delete_session(self, session_id: str, chat_id: str) -> None:
        """Delete one mirrored session under the chat that made it; one that chat no longer
        has counts as deleted. RagflowChatForbidden if the key cannot use that chat."""
        if not session_id:
            # v0.24 deletes *every* session of the chat for an empty or missing list.
            raise ValueError("refusing to delete without a session id")
        try:
            data = await self._call(
                "DELETE",
                f"/chats/{chat_id}/sessions",
                {"ids": [session_id]},
                limits=self._manage_timeout,
                retry=True,
            )
        except RagflowNotFound:
            return
        errors = data.get("errors") if isinstance(data, dict) else None
        if errors and not all(isinstance(error_for(102, str(e)), RagflowNotFound) for e in errors):
            raise RagflowError(f"RAGFlow did not delete session {session_id}: {errors}")

    async def ask(self, session_id: str, question: str, user_id: str) -> Grounding:
        """Ask the session's RAGFlow conversation; its answer and references ground ours.

        Through `POST /chat/completions` where the server has it, else the deprecated
        `POST /chats/{id}/completions` (v0.24, v0.25.0). Never retried.
        """
        body: dict[str, Any] = {"question": question, "stream": False, "session_id": session_id}
        current = ("/chat/completions", {**body, "chat_id": self.chat_id})
        old = (f"/chats/{self.chat_id}/completions", {**body, "user_id": user_id})
        routes = [current, old] if time.monotonic() >= self._old_route_until else [old, current]
        data: Any = None
        for index, (path, sent) in enumerate(routes):
            try:
                data = await self._call("POST", path, sent)
                break
            except RagflowRouteMissing:
                if path == current[0]:
                    self._old_route_until = time.monotonic() + ROUTE_RECHECK_SECONDS
                if index == len(routes) - 1:
                    raise
        if path == current[0]:
            self._old_route_until = 0.0
        if not isinstance(data, dict):
            raise RagflowError("RAGFlow answered without data")
        answer = str(data.get("answer") or "").strip()
        if answer.startswith("**ERROR**"):
            raise RagflowError(f"RAGFlow failed to answer: {answer[:200]}")
        references = references_from(data.get("reference"), cited=cited_indices(answer))
        text = f"The knowledge base's answer: {answer}" if answer else ""
        return Grounding("ragflow_chat", with_sources(text, references), references)

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
            retry=True,
        )
        references = references_from(data)
        return Grounding("retrieval", with_sources("", references), references)

    async def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any],
        *,
        limits: httpx.Timeout | None = None,
        retry: bool = False,
    ) -> Any:
        """One call, retried if `retry` (only what is safe to repeat); timed and counted by
        operation in the metrics."""
        route = path.split("?", 1)[0].rsplit("/", 1)[-1]
        operation = _OPERATIONS.get((method, route), "rename_session")
        started = time.perf_counter()
        try:
            if retry:
                data = await self._call_retrying(method, path, body, limits)
            else:
                data = await self._call_once(method, path, body, limits)
        except RagflowError as exc:
            metrics.RAGFLOW_CALL_SECONDS.labels(operation, "error").observe(
                time.perf_counter() - started
            )
            metrics.RAGFLOW_ERRORS.labels(operation, error_kind(exc)).inc()
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
                method,
                path,
                json=body if method != "GET" else None,
                timeout=limits or self.http.timeout,
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
        if response.status_code == 404:
            raise RagflowRouteMissing(f"RAGFlow has no route {method} {path} (HTTP 404)", code=404)
        if response.status_code >= 500:
            raise RagflowUnavailable(f"RAGFlow answered HTTP {response.status_code}")
        if response.status_code >= 400:
            raise RagflowError(
                f"RAGFlow answered HTTP {response.status_code}", code=response.status_code
            )
        envelope = envelope_of(response)
        code = envelope.get("code")
        if code == CODE_OK:
            return envelope.get("data")
        raise error_for(code, str(envelope.get("message") or ""))


_OPERATIONS = {
    ("POST", "sessions"): "create_session",
    ("GET", "sessions"): "list_sessions",
    ("DELETE", "sessions"): "delete_session",
    ("POST", "completions"): "ask",
    ("POST", "retrieval"): "retrieve",
}


def _name(title: str) -> str:
    return title.strip()[:NAME_CHARS] or "New chat"
