"""Every field limit of api.md, table-driven: a clear 4xx with a `detail`, nothing written,
no LLM call."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from session_service.db.models import ChatMessage, ChatSession
from tests.fakes.openai import FakeLLM
from tests.helpers import auth

USER = "bad-input-user"
HEADERS = auth(USER)
SESSION = "bad-input-session"
BIG = b'{"content": "' + b"x" * (2 * 1024 * 1024) + b'"}'
TURN = f"/api/sessions/{SESSION}/messages"
HUGE = "99999999999999999999"  # past 64 bits
# What Python's json reads but JSON and UTF-8 do not have: each in every kind of field.
UNENCODABLE = [b"NaN", b"Infinity", b"-Infinity", b"1e999", b'"\\ud800"', b'"x\\udfffy"']
RAW_SURROGATE = b'"\xed\xa0\x80"'  # a surrogate's UTF-8 bytes, not valid UTF-8


def _with(template: str) -> list[bytes]:
    return [template.encode().replace(b"@", value) for value in [*UNENCODABLE, RAW_SURROGATE]]


def _cursor(payload: str) -> str:
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


# (method, path, body: json value | raw bytes | None, query, expected status)
CASES: list[tuple[str, str, Any, dict[str, Any] | None, int]] = [
    # creating sessions
    ("POST", "/api/sessions", {"title": "x" * 501}, None, 422),
    ("POST", "/api/sessions", {"title": None}, None, 422),
    ("POST", "/api/sessions", {"title": ["list"]}, None, 422),
    ("POST", "/api/sessions", {"context": "text"}, None, 422),
    ("POST", "/api/sessions", {"context": None}, None, 422),
    ("POST", "/api/sessions", {"session_id": ""}, None, 422),
    ("POST", "/api/sessions", {"session_id": "x" * 65}, None, 422),
    ("POST", "/api/sessions", {"session_id": "bad id"}, None, 422),
    ("POST", "/api/sessions", {"session_id": "ümlaut"}, None, 422),
    ("POST", "/api/sessions", {"session_id": "status"}, None, 422),
    ("POST", "/api/sessions", {"session_id": "cleanup"}, None, 422),
    ("POST", "/api/sessions", {"session_id": 12}, None, 422),
    ("POST", "/api/sessions", [], None, 422),
    ("POST", "/api/sessions", b'{"title": "unterminated', None, 422),
    ("POST", "/api/sessions", b'{"title": "\xff\xfe"}', None, 422),
    ("POST", "/api/sessions", BIG, None, 413),
    # listing
    ("GET", "/api/sessions", None, {"limit": 0}, 422),
    ("GET", "/api/sessions", None, {"limit": 101}, 422),
    ("GET", "/api/sessions", None, {"limit": "ten"}, 422),
    ("GET", "/api/sessions", None, {"cursor": "!!!"}, 422),
    ("GET", "/api/sessions", None, {"cursor": "eyJ1IjoxfQ"}, 422),
    # reading
    ("GET", f"/api/sessions/{SESSION}", None, {"messages_limit": -1}, 422),
    ("GET", f"/api/sessions/{SESSION}", None, {"messages_limit": 501}, 422),
    ("GET", "/api/sessions/" + "x" * 65, None, None, 422),
    ("GET", f"/api/sessions/{SESSION}/messages", None, {"limit": 0}, 422),
    ("GET", f"/api/sessions/{SESSION}/messages", None, {"limit": 501}, 422),
    ("GET", f"/api/sessions/{SESSION}/messages", None, {"before": "xyz"}, 422),
    ("GET", f"/api/sessions/{SESSION}/messages/0/stream", None, None, 422),
    ("GET", f"/api/sessions/{SESSION}/messages/abc/stream", None, None, 422),
    # updating
    ("PATCH", f"/api/sessions/{SESSION}", {"title": "x" * 501}, None, 422),
    ("PATCH", f"/api/sessions/{SESSION}", {"context": [1]}, None, 422),
    ("PATCH", f"/api/sessions/{SESSION}", {"user_id": "someone"}, None, 422),
    ("PATCH", f"/api/sessions/{SESSION}", b"not json", None, 422),
    # chat turns
    ("POST", f"/api/sessions/{SESSION}/messages", {}, None, 422),
    ("POST", f"/api/sessions/{SESSION}/messages", {"content": ""}, None, 422),
    ("POST", f"/api/sessions/{SESSION}/messages", {"content": None}, None, 422),
    ("POST", f"/api/sessions/{SESSION}/messages", {"content": 42}, None, 422),
    ("POST", f"/api/sessions/{SESSION}/messages", {"content": "x" * 32001}, None, 413),
    ("POST", f"/api/sessions/{SESSION}/messages", {"content": "😀" * 32001}, None, 413),
    (
        "POST",
        f"/api/sessions/{SESSION}/messages",
        {"content": "x", "client_message_id": ""},
        None,
        422,
    ),
    (
        "POST",
        f"/api/sessions/{SESSION}/messages",
        {"content": "x", "client_message_id": "c" * 65},
        None,
        422,
    ),
    ("POST", f"/api/sessions/{SESSION}/messages", {"content": "x", "if_busy": "never"}, None, 422),
    ("POST", f"/api/sessions/{SESSION}/messages", {"content": "x", "stream": "maybe"}, None, 422),
    ("POST", f"/api/sessions/{SESSION}/messages", b'{"content": "\xc3\x28"}', None, 422),
    ("POST", f"/api/sessions/{SESSION}/messages", b'{"content": ', None, 422),
    ("POST", f"/api/sessions/{SESSION}/messages", BIG, None, 413),
    ("POST", "/api/sessions/" + "y" * 65 + "/messages", {"content": "x"}, None, 422),
    # admin
    ("POST", "/api/sessions/cleanup", {"max_age_seconds": -1}, None, 422),
    ("POST", "/api/sessions/cleanup", {"max_age_seconds": "soon"}, None, 422),
    ("GET", "/api/sessions/status", None, {"agents_limit": -5}, 422),
    # values JSON and UTF-8 do not have, in every field (and in unknown ones)
    *[("POST", "/api/sessions", body, None, 422) for body in _with('{"title": @}')],
    *[("POST", "/api/sessions", body, None, 422) for body in _with('{"context": {"k": @}}')],
    *[("POST", "/api/sessions", body, None, 422) for body in _with('{"context": {"k": [1, @]}}')],
    *[("POST", "/api/sessions", body, None, 422) for body in _with('{"session_id": @}')],
    *[("POST", "/api/sessions", body, None, 422) for body in _with('{"other": @}')],
    ("POST", "/api/sessions", b'{"context": {"\\ud800": 1}}', None, 422),
    *[("PATCH", f"/api/sessions/{SESSION}", body, None, 422) for body in _with('{"title": @}')],
    *[("PATCH", f"/api/sessions/{SESSION}", b, None, 422) for b in _with('{"context": {"k": @}}')],
    *[("POST", TURN, body, None, 422) for body in _with('{"content": @}')],
    *[("POST", TURN, b, None, 422) for b in _with('{"content": "x", "client_message_id": @}')],
    *[("POST", TURN, body, None, 422) for body in _with('{"content": "x", "stream": @}')],
    *[("POST", TURN, body, None, 422) for body in _with('{"content": "x", "if_busy": @}')],
    *[("POST", "/api/sessions/cleanup", b, None, 422) for b in _with('{"max_age_seconds": @}')],
    ("POST", "/api/sessions/cleanup", b'{"max_age_seconds": ' + HUGE.encode() + b"}", None, 422),
    # nested deeper than the database (32) or the renderer (255) would take
    ("POST", "/api/sessions", b'{"context": {"a": ' + b"[" * 16 + b"]" * 16 + b"}}", None, 422),
    ("POST", "/api/sessions", b'{"context": {"a": ' + b"[" * 300 + b"]" * 300 + b"}}", None, 422),
    (
        "PATCH",
        f"/api/sessions/{SESSION}",
        b'{"context": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        None,
        422,
    ),
    ("GET", "/api/sessions", None, {"cursor": _cursor("[" * 5000 + "]" * 5000)}, 422),
    ("GET", "/api/audit", None, {"cursor": _cursor("[" * 5000 + "]" * 5000)}, 422),
    # empty and blank titles
    ("POST", "/api/sessions", {"title": ""}, None, 422),
    ("POST", "/api/sessions", {"title": " \t\n"}, None, 422),
    ("POST", "/api/sessions", {"title": "\u200b\ufeff\u3000"}, None, 422),
    ("PATCH", f"/api/sessions/{SESSION}", {"title": ""}, None, 422),
    ("PATCH", f"/api/sessions/{SESSION}", {"title": "   "}, None, 422),
    # integers past 64 bits in paths and queries (and inside cursors)
    ("GET", f"/api/sessions/{SESSION}/messages/{HUGE}/stream", None, None, 422),
    ("GET", f"/api/sessions/{SESSION}/messages/9223372036854775808/stream", None, None, 422),
    ("GET", "/api/sessions", None, {"limit": HUGE}, 422),
    ("GET", f"/api/sessions/{SESSION}", None, {"messages_limit": HUGE}, 422),
    ("GET", f"/api/sessions/{SESSION}/messages", None, {"limit": HUGE}, 422),
    (
        "GET",
        f"/api/sessions/{SESSION}/messages",
        None,
        {"before": _cursor('{"before":' + HUGE + "}")},
        422,
    ),
    ("GET", "/api/audit", None, {"cursor": _cursor('{"before":' + HUGE + "}")}, 422),
    ("GET", "/api/audit", None, {"limit": HUGE}, 422),
    ("GET", "/api/sessions/status", None, {"agents_limit": HUGE}, 422),
]


@pytest.fixture
async def prepared(llm_client: AsyncClient, db: async_sessionmaker[AsyncSession]) -> AsyncClient:
    response = await llm_client.post("/api/sessions", json={"session_id": SESSION}, headers=HEADERS)
    assert response.status_code in (200, 201)
    return llm_client


async def counts(db: async_sessionmaker[AsyncSession]) -> tuple[int, int, str]:
    async with db() as session:
        sessions = await session.scalar(
            select(func.count()).select_from(ChatSession).where(ChatSession.user_id == USER)
        )
        messages = await session.scalar(
            select(func.count()).select_from(ChatMessage).where(ChatMessage.session_id == SESSION)
        )
        row = await session.get(ChatSession, SESSION)
    assert row is not None
    return int(sessions or 0), int(messages or 0), row.title


@pytest.mark.parametrize(("method", "path", "body", "query", "status"), CASES)
async def test_bad_input_is_refused_cleanly(
    prepared: AsyncClient,
    fake_llm: FakeLLM,
    db: async_sessionmaker[AsyncSession],
    method: str,
    path: str,
    body: Any,
    query: dict[str, Any] | None,
    status: int,
) -> None:
    before = await counts(db)
    headers = (
        {**HEADERS, **auth("an-admin", admin=True)}
        if any(admin in path for admin in ("cleanup", "status", "audit"))
        else HEADERS
    )
    if isinstance(body, bytes):
        response = await prepared.request(
            method,
            path,
            content=body,
            params=query,
            headers={**headers, "Content-Type": "application/json"},
        )
    else:
        response = await prepared.request(method, path, json=body, params=query, headers=headers)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert detail
    assert isinstance(detail, str | list)
    assert await counts(db) == before
    assert fake_llm.calls == []
    json.dumps(detail, allow_nan=False).encode()


async def test_an_oversized_body_sent_without_a_length_is_refused(
    prepared: AsyncClient, fake_llm: FakeLLM, db: async_sessionmaker[AsyncSession]
) -> None:
    before = await counts(db)

    async def chunks() -> Any:
        yield b'{"content": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}'

    response = await prepared.post(
        f"/api/sessions/{SESSION}/messages",
        content=chunks(),
        headers={**HEADERS, "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert "over" in response.json()["detail"]
    assert await counts(db) == before
    assert fake_llm.calls == []
