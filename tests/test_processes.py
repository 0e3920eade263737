"""Crashes and replicas for real: `kill -9` of a serving process mid-turn and mid-stream, and
two service processes on one database."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from session_service.db.models import ChatMessage, ChatSession
from tests.fakes.openai import FakeLLM
from tests.helpers import JWT_SECRET, assert_one_writer, auth, conversation, eventually, stored
from tests.processes import Server, serving

LEASE_SECONDS = 2


@pytest.fixture
def service_env(migrated_url: str, fake_llm: FakeLLM) -> dict[str, str]:
    return {
        "DATABASE_URL": migrated_url,
        "LLM_PROVIDER": "openai",
        "LLM_BASE_URL": fake_llm.base_url,
        "LLM_API_KEY": "k",
        "AUTH_JWT_SECRET": JWT_SECRET,
        "TURN_LOCK_LEASE_SECONDS": str(LEASE_SECONDS),
        "LOG_LEVEL": "WARNING",
        "AUTO_TITLE": "false",  # every LLM call here is a turn's
    }


@pytest.fixture
def replicas(tmp_path: Path, service_env: dict[str, str]) -> Iterator[list[Server]]:
    with ExitStack() as stack:
        yield [stack.enter_context(serving(tmp_path, **service_env)) for _ in range(2)]


async def settled(db: async_sessionmaker[AsyncSession], session_id: str) -> ChatSession:
    """The session once no reply is left in progress (the test fails after 10 s)."""

    async def nothing_in_progress() -> bool:
        async with db() as session:
            row = await session.get(ChatSession, session_id)
            streaming = await session.scalar(
                select(ChatMessage.id).where(
                    ChatMessage.session_id == session_id,
                    ChatMessage.meta["status"].as_string() == "streaming",
                )
            )
        return row is not None and row.generating_message_id is None and streaming is None

    await eventually(nothing_in_progress)
    async with db() as session:
        row = await session.get(ChatSession, session_id)
    assert row is not None
    return row


@pytest.mark.parametrize("stream", [False, True])
async def test_kill_9_mid_turn_then_restart(
    tmp_path: Path,
    service_env: dict[str, str],
    fake_llm: FakeLLM,
    db: async_sessionmaker[AsyncSession],
    stream: bool,
) -> None:
    alice = auth("alice-crash")
    fake_llm.reply = lambda _m: " ".join(f"w{i}" for i in range(40))
    fake_llm.chunk_delay = 0.1
    with serving(tmp_path, **service_env) as server:
        async with httpx.AsyncClient(base_url=server.base, timeout=30) as http:
            session_id = (await http.post("/api/sessions", json={}, headers=alice)).json()[
                "session_id"
            ]
            ok = await http.post(
                f"/api/sessions/{session_id}/messages", json={"content": "one"}, headers=alice
            )
            assert ok.status_code == 201
            fake_llm.delay = 0 if stream else 5
            doomed = asyncio.create_task(
                http.post(
                    f"/api/sessions/{session_id}/messages",
                    json={"content": "two", "stream": stream},
                    headers=alice,
                )
            )
            await asyncio.sleep(1.0)  # the question is stored; the reply is on its way
            server.kill()
            with contextlib.suppress(httpx.HTTPError):
                await doomed
    fake_llm.delay = fake_llm.chunk_delay = 0
    with serving(tmp_path, **service_env) as server:
        row = await settled(db, session_id)
        assert row.turn_lock_owner is None or row.turn_lock_expires_at is not None
        rows = await stored(db, session_id)
        assert rows[:3] == [
            (1, "user", "one"),
            (2, "assistant", fake_llm.reply([])),
            (3, "user", "two"),
        ]
        assert [r[1] for r in rows] == ["user", "assistant", "user", "assistant"]
        async with db() as session:
            interrupted = await session.scalar(
                select(ChatMessage).where(
                    ChatMessage.session_id == session_id, ChatMessage.seq == 4
                )
            )
        assert interrupted is not None
        assert interrupted.meta["status"] == "interrupted"
        async with httpx.AsyncClient(base_url=server.base, timeout=30) as http:
            after = await http.post(
                f"/api/sessions/{session_id}/messages", json={"content": "three"}, headers=alice
            )
        assert after.status_code == 201
    history = conversation(fake_llm.calls[-1])
    assert history[:3] == [("user", "one"), ("assistant", fake_llm.reply([])), ("user", "two")]
    assert history[-1] == ("user", "three")


async def test_two_processes_keep_one_session_in_order(
    replicas: list[Server], fake_llm: FakeLLM, db: async_sessionmaker[AsyncSession]
) -> None:
    alice = auth("alice-replicas")
    fake_llm.delay = 0.02
    one, two = (httpx.AsyncClient(base_url=r.base, timeout=60) for r in replicas)
    async with one, two:
        session_id = (await one.post("/api/sessions", json={}, headers=alice)).json()["session_id"]
        for i in range(4):
            replica = one if i % 2 == 0 else two
            response = await replica.post(
                f"/api/sessions/{session_id}/messages", json={"content": f"s{i}"}, headers=alice
            )
            assert response.status_code == 201
        responses = await asyncio.gather(
            *(
                (one if i % 2 else two).post(
                    f"/api/sessions/{session_id}/messages",
                    json={"content": f"p{i}", "stream": i % 3 == 0},
                    headers=alice,
                )
                for i in range(12)
            )
        )
        assert [r.status_code for r in responses] == [201] * 12
    rows = await stored(db, session_id)
    assert len(rows) == 32
    assert_one_writer(rows, fake_llm.calls)


async def test_release_delete_and_recreate_across_processes(
    replicas: list[Server], fake_llm: FakeLLM
) -> None:
    alice = auth("alice-recreate")
    admin = auth("root", admin=True)
    one, two = (httpx.AsyncClient(base_url=r.base, timeout=60) for r in replicas)
    async with one, two:
        body: dict[str, Any] = {"session_id": "shared-across"}
        assert (await one.post("/api/sessions", json=body, headers=alice)).status_code == 201
        path = "/api/sessions/shared-across"
        await one.post(f"{path}/messages", json={"content": "old"}, headers=alice)
        assert (
            await one.post("/api/sessions/cleanup", json={"max_age_seconds": 0}, headers=admin)
        ).json()["released"] >= 1
        restored = (await two.get(path, headers=alice)).json()
        assert restored["agent_active"] is True
        assert [m["content"] for m in restored["messages"]] == ["old", "echo: old"]
        await one.get(path, headers=alice)  # replica one holds an agent again
        assert (await two.delete(path, headers=alice)).status_code == 204
        assert (await one.get(path, headers=alice)).status_code == 404
        assert (await two.post("/api/sessions", json=body, headers=alice)).status_code == 201
        fresh = await one.post(f"{path}/messages", json={"content": "new"}, headers=alice)
        assert fresh.status_code == 201
    # replica one's agent knew the deleted session: it must not leak into the new one
    assert [m["content"] for m in fake_llm.calls[-1]["messages"][1:]] == ["new"]
