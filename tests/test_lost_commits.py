"""A COMMIT whose answer never comes back (the connection dies with it: a database node
leaving, a network cut): the server may have committed or not, and the service must answer what
is stored. A TCP proxy ends the connection at the next COMMIT (or another statement), after the
server has it (`delivered`) or before."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from session_service.config import Settings
from session_service.db.repositories import SessionRepository
from tests.conftest import serve_app
from tests.fakes.openai import FakeLLM
from tests.fakes.tcp_proxy import TcpProxy
from tests.helpers import (
    Headers,
    answered,
    auth,
    conversation,
    eventually,
    new_session,
    stored,
    turn,
)

pytestmark = pytest.mark.parametrize("delivered", [True, False], ids=["committed", "undone"])


@pytest.fixture
async def client(
    llm_settings: Callable[..., Settings], proxied_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    settings = llm_settings(database_url=proxied_url)
    async with serve_app(settings) as app_client:
        yield app_client


async def test_a_create_answers_201_once_whatever_became_of_its_commit(
    client: httpx.AsyncClient,
    proxy: TcpProxy,
    alice: Headers,
    delivered: bool,
) -> None:
    await new_session(client, alice, title="warm")  # a pooled connection, already set up
    proxy.lose_next(delivered=delivered)
    created = await client.post("/api/sessions", json={"title": "lost?"}, headers=alice)
    assert proxy.lost == 1
    assert created.status_code == 201, created.text
    listed = await client.get("/api/sessions", headers=alice)
    assert sorted(s["title"] for s in listed.json()["items"]) == ["lost?", "warm"]
    assert created.json()["session_id"] in {s["session_id"] for s in listed.json()["items"]}


async def test_a_rename_answers_what_is_stored(
    client: httpx.AsyncClient, proxy: TcpProxy, alice: Headers, delivered: bool
) -> None:
    session_id = await new_session(client, alice, title="before")
    proxy.lose_next(delivered=delivered)
    path = f"/api/sessions/{session_id}"
    renamed = await client.patch(path, json={"title": "after"}, headers=alice)
    assert proxy.lost == 1
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["title"] == "after"
    assert (await client.get(path, headers=alice)).json()["title"] == "after"


async def test_a_delete_answers_204_and_the_session_is_gone(
    client: httpx.AsyncClient,
    proxy: TcpProxy,
    alice: Headers,
    delivered: bool,
) -> None:
    session_id = await new_session(client, alice)
    proxy.lose_next(delivered=delivered)
    deleted = await client.delete(f"/api/sessions/{session_id}", headers=alice)
    assert proxy.lost == 1
    assert deleted.status_code == 204, deleted.text
    assert deleted.content == b""
    again = await client.get(f"/api/sessions/{session_id}", headers=alice)
    assert again.status_code == 404


async def test_a_fork_answers_201_with_one_new_session(
    client: httpx.AsyncClient, proxy: TcpProxy, alice: Headers, delivered: bool
) -> None:
    session_id = await new_session(client, alice, title="source")
    reply = await answered(client, alice, session_id, "hello")
    proxy.lose_next(delivered=delivered)
    forked = await client.post(
        f"/api/sessions/{session_id}/fork",
        json={"message_id": reply["assistant_message"]["id"], "title": "fork"},
        headers=alice,
    )
    assert proxy.lost == 1
    assert forked.status_code == 201, forked.text
    listed = (await client.get("/api/sessions", headers=alice)).json()["items"]
    assert sorted(s["title"] for s in listed) == ["fork", "source"]


async def test_a_turn_whose_question_commit_was_lost_is_answered_and_stored_once(
    client: httpx.AsyncClient,
    proxy: TcpProxy,
    fake_llm: FakeLLM,
    alice: Headers,
    db: async_sessionmaker[AsyncSession],
    delivered: bool,
) -> None:
    session_id = await new_session(client, alice)
    await answered(client, alice, session_id, "first")
    proxy.lose_next(delivered=delivered)
    second = await answered(client, alice, session_id, "second")
    assert proxy.lost == 1
    assert second["assistant_message"]["content"] == "echo: second"
    assert [row[1:] for row in await stored(db, session_id)] == _echoed("first", "second")
    assert len(fake_llm.calls) == 2  # the question was answered once
    after = await answered(client, alice, session_id, "third")  # the lease was let go
    assert after["user_message"]["parent_id"] == second["assistant_message"]["id"]


async def test_a_reply_whose_commit_was_lost_is_stored_once(
    client: httpx.AsyncClient,
    proxy: TcpProxy,
    alice: Headers,
    db: async_sessionmaker[AsyncSession],
    delivered: bool,
) -> None:
    """The turn's second COMMIT (its reply's) is lost: stored again, once, and the lease let go."""
    session_id = await new_session(client, alice)
    proxy.lose_next(delivered=delivered, skip=1)
    reply = await answered(client, alice, session_id, "first")
    assert proxy.lost == 1
    assert reply["assistant_message"]["content"] == "echo: first"
    after = await answered(client, alice, session_id, "second", if_busy="reject")
    assert after["user_message"]["parent_id"] == reply["assistant_message"]["id"]
    assert [row[1:] for row in await stored(db, session_id)] == _echoed("first", "second")


async def test_a_stop_whose_commit_was_lost_stops_the_reply(
    client: httpx.AsyncClient,
    proxy: TcpProxy,
    fake_llm: FakeLLM,
    alice: Headers,
    db: async_sessionmaker[AsyncSession],
    delivered: bool,
) -> None:
    """A stop does the same when run again: its request, its commit in doubt, runs again."""
    session_id = await new_session(client, alice)
    fake_llm.delay = 30
    running = asyncio.create_task(turn(client, alice, session_id, "long"))
    reply_id = await _generating(db, session_id)
    proxy.lose_next(delivered=delivered)
    stopped = await client.post(
        f"/api/sessions/{session_id}/messages/{reply_id}/stop", headers=alice
    )
    assert proxy.lost == 1
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["metadata"]["status"] == "stopped"
    answer = await running
    assert answer.status_code == 201, answer.text
    assert answer.json()["assistant_message"] == stopped.json()


async def _generating(db: async_sessionmaker[AsyncSession], session_id: str) -> int:
    """The reply being generated in the session, once its turn has stored its question."""
    generating: int | None = None

    async def stored_question() -> bool:
        nonlocal generating
        async with db() as session:
            row = await SessionRepository.from_session(session).get(session_id)
        generating = row.generating_message_id if row is not None else None
        return generating is not None

    await eventually(stored_question)
    assert generating is not None
    return generating


async def test_an_agent_rebuilt_over_a_lost_connection_answers(
    client: httpx.AsyncClient,
    proxy: TcpProxy,
    fake_llm: FakeLLM,
    delivered: bool,
) -> None:
    """The read that rebuilds a released agent loses its connection: read again, answered."""
    admin = auth("lost-reads", admin=True)
    session_id = await new_session(client, admin)
    await answered(client, admin, session_id, "first")
    cleanup = {"max_age_seconds": 0}
    released = await client.post("/api/sessions/cleanup", json=cleanup, headers=admin)
    assert released.json()["released"] >= 1
    proxy.lose_next(b"ORDER BY branch.depth", delivered=delivered)
    second = await answered(client, admin, session_id, "second")
    assert proxy.lost == 1
    assert second["assistant_message"]["content"] == "echo: second"
    assert conversation(fake_llm.calls[-1]) == [
        ("user", "first"),
        ("assistant", "echo: first"),
        ("user", "second"),
    ]


async def test_a_turn_whose_reads_rollback_was_lost_is_answered(
    client: httpx.AsyncClient,
    proxy: TcpProxy,
    alice: Headers,
    db: async_sessionmaker[AsyncSession],
    delivered: bool,
) -> None:
    """The ROLLBACK ending a turn's first read (of a repeated client_message_id) is lost: not a
    commit in doubt, so the request runs again, and the turn is answered once."""
    session_id = await new_session(client, alice)
    proxy.lose_next(b"\x03ROLLBACK", delivered=delivered)
    first = await answered(client, alice, session_id, "once", client_message_id="c-1")
    assert proxy.lost == 1
    assert first["assistant_message"]["content"] == "echo: once"
    assert len(await stored(db, session_id)) == 2


async def test_an_interrupting_turn_whose_stop_requests_commit_was_lost_is_answered(
    client: httpx.AsyncClient,
    proxy: TcpProxy,
    fake_llm: FakeLLM,
    alice: Headers,
    delivered: bool,
) -> None:
    """`if_busy: interrupt`: its stop request (the same when run again) loses its COMMIT's
    answer; asked again, the running reply stops and the turn is answered after it."""
    session_id = await new_session(client, alice)
    fake_llm.delay = 30
    running = asyncio.create_task(turn(client, alice, session_id, "long"))

    async def asked() -> bool:
        return bool(fake_llm.calls)

    await eventually(asked)
    fake_llm.delay = 0  # the running reply's call already waits its 30 s
    proxy.lose_next(delivered=delivered)
    after = await answered(client, alice, session_id, "instead", if_busy="interrupt")
    assert proxy.lost == 1
    stopped = await running
    assert stopped.status_code == 201, stopped.text
    assert stopped.json()["assistant_message"]["metadata"]["status"] == "stopped"
    assert after["user_message"]["parent_id"] == stopped.json()["assistant_message"]["id"]


def _echoed(*questions: str) -> list[tuple[str, str]]:
    """The stored (role, content) of turns answered by the fake LLM, each once, in order."""
    return [
        pair
        for question in questions
        for pair in (("user", question), ("assistant", f"echo: {question}"))
    ]
