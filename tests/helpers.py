"""Small helpers shared by the tests."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pymysql
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from session_service.auth import mint_token
from session_service.db.models import ChatMessage
from session_service.db.repositories import MessageRepository, SessionRepository
from session_service.db.types import utcnow

JWT_SECRET = "test-secret-" + "x" * 32

Headers = dict[str, str]


def mysql_connect(url: str, **options: Any) -> pymysql.Connection[Any]:
    """A plain PyMySQL connection to the server (and database, if any) a URL names."""
    parsed = make_url(url)
    return pymysql.connect(
        host=parsed.host or "127.0.0.1",
        port=parsed.port or 3306,
        user=parsed.username or "root",
        password=parsed.password or "",
        database=parsed.database or None,
        charset="utf8mb4",
        **options,
    )


@contextmanager
def scratch_database(server_url: str, prefix: str, charset: str = "utf8mb4") -> Iterator[str]:
    """A new, uniquely named database on the server of `server_url`, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = mysql_connect(
        make_url(server_url).set(database=None).render_as_string(False), autocommit=True
    )
    collation = " COLLATE utf8mb4_bin" if charset == "utf8mb4" else ""
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET {charset}{collation}")
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


async def eventually(condition: Callable[[], Awaitable[bool]], seconds: float = 10) -> None:
    """Wait until `condition()` holds, checking every 50 ms; fail the test after `seconds`."""
    deadline = time.monotonic() + seconds
    while not await condition():
        assert time.monotonic() < deadline, f"still not true after {seconds} s"
        await asyncio.sleep(0.05)


def auth(user_id: str, *, admin: bool = False, ttl: int = 3600) -> Headers:
    token = mint_token(JWT_SECRET, user_id, admin=admin, ttl_seconds=ttl)
    return {"Authorization": f"Bearer {token}"}


async def created_session(
    client: httpx.AsyncClient, headers: Headers, **body: Any
) -> dict[str, Any]:
    """POST /api/sessions with `body`; the new session, as the API returns it."""
    response = await client.post("/api/sessions", json=body, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def new_session(client: httpx.AsyncClient, headers: Headers, **body: Any) -> str:
    """The id of a session made by `created_session`."""
    session_id: str = (await created_session(client, headers, **body))["session_id"]
    return session_id


async def turn(
    client: httpx.AsyncClient, headers: Headers, session_id: str, content: str, **extra: Any
) -> httpx.Response:
    """POST a question (with any `extra` fields of the turn body); the response, unchecked."""
    return await client.post(
        f"/api/sessions/{session_id}/messages", json={"content": content, **extra}, headers=headers
    )


async def answered(
    client: httpx.AsyncClient, headers: Headers, session_id: str, content: str, **extra: Any
) -> dict[str, Any]:
    """A `turn` that must be answered (201); its body."""
    response = await turn(client, headers, session_id, content, **extra)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def add_messages(
    db: async_sessionmaker[AsyncSession], session_id: str, contents: list[str]
) -> None:
    """Store messages the way turns do: on the active leaf, with consecutive `seq`, counted
    on the session row, the last one the new active leaf."""
    async with db() as session:
        row = await SessionRepository.from_session(session).get(session_id)
        assert row is not None
        parent = row.active_message_id
        for offset, content in enumerate(contents, start=1):
            seq = row.message_count + offset
            role = "user" if seq % 2 else "assistant"
            message = await MessageRepository.from_session(session).insert(
                ChatMessage(
                    session_id=session_id, seq=seq, parent_id=parent, role=role, content=content
                )
            )
            parent = message.id
        sessions = SessionRepository.from_session(session)
        await sessions.record_messages(session_id, len(contents), utcnow())
        await sessions.set_active(session_id, parent)
        await session.commit()


async def stored(
    db: async_sessionmaker[AsyncSession], session_id: str
) -> list[tuple[int, str, str]]:
    """(seq, role, content) of every stored message of the session, on every branch, in the
    order they were made."""
    async with db() as session:
        rows = await session.scalars(
            select(ChatMessage)
            .where(col(ChatMessage.session_id) == session_id)
            .order_by(col(ChatMessage.seq))
        )
        return [(m.seq, m.role, m.content) for m in rows]


def conversation(call: dict[str, Any]) -> list[tuple[str, str]]:
    """(role, content) of what the LLM was sent, without the system prompt."""
    return [(m["role"], m["content"]) for m in call["messages"] if m["role"] != "system"]


def assert_one_writer(rows: list[tuple[int, str, str]], calls: list[dict[str, Any]]) -> None:
    """A session's stored `rows` after turns answered by the fake LLM (one call each): every
    answer right after its question, and every call sent exactly the stored history before its
    question, in order, each message once."""
    assert [seq for seq, _, _ in rows] == list(range(1, len(rows) + 1))
    for (_, role_q, question), (_, role_a, answer) in zip(rows[::2], rows[1::2], strict=True):
        assert (role_q, role_a, answer) == ("user", "assistant", f"echo: {question}")
    assert len(calls) == len(rows) // 2
    for index, call in enumerate(calls):
        assert conversation(call) == [(role, content) for _, role, content in rows[: 2 * index + 1]]
