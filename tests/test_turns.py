"""Chat turns over HTTP against the real langchain-openai client and a fake LLM on the wire."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import event, update
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession, AsyncSessionTransaction, async_sessionmaker

from session_service.auth import User
from session_service.chat.questions import Ask
from session_service.chat.turn_store import TurnStore
from session_service.config import Settings
from session_service.db.models import ChatSession
from session_service.db.turn_lock import TurnLocks
from session_service.db.types import utcnow
from tests.conftest import serve_app
from tests.fakes.openai import FakeLLM
from tests.helpers import (
    Headers,
    add_messages,
    assert_one_writer,
    auth,
    conversation,
    eventually,
    new_session,
    stored,
    turn,
)

ADMIN = auth("root-admin", admin=True)


async def test_offline_model_end_to_end(client: AsyncClient, alice: Headers) -> None:
    session_id = await new_session(client, alice)
    first = await turn(client, alice, session_id, "What is 𝄞?")
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["user_message"]["content"] == "What is 𝄞?"
    assert body["user_message"]["role"] == "user"
    reply = body["assistant_message"]
    assert reply["role"] == "assistant"
    assert "offline" in reply["content"]
    assert '"What is 𝄞?"' in reply["content"]
    assert "0 earlier messages" in reply["content"]
    assert reply["metadata"]["model"] == "offline"
    assert reply["metadata"]["usage"]["output_tokens"] > 0
    second = (await turn(client, alice, session_id, "And then?")).json()
    assert "2 earlier messages" in second["assistant_message"]["content"]
    read = (await client.get(f"/api/sessions/{session_id}", headers=alice)).json()
    assert read["message_count"] == 4
    assert [m["role"] for m in read["messages"]] == ["user", "assistant"] * 2


async def test_the_design_notes_persistence_scenario(
    llm_client: AsyncClient, fake_llm: FakeLLM, alice: Headers, db: async_sessionmaker[AsyncSession]
) -> None:
    client = llm_client
    session_id = await new_session(client, alice, title="persistence")
    for question in ("one", "two", "three"):
        response = await turn(client, alice, session_id, question)
        assert response.status_code == 201
        assert response.json()["assistant_message"]["content"] == f"echo: {question}"
        assert response.json()["assistant_message"]["metadata"]["model"] == "fake-model"
    status = (await client.get("/api/sessions/status", headers=ADMIN)).json()
    assert session_id in [agent["session_id"] for agent in status["agents"]]
    restores_before = status["restores_total"]

    released = await client.post(
        "/api/sessions/cleanup", json={"max_age_seconds": 0}, headers=ADMIN
    )
    assert released.status_code == 200
    assert released.json()["released"] >= 1
    listed = (await client.get("/api/sessions", headers=alice)).json()["items"]
    assert listed[0]["agent_active"] is False

    expected = [
        (1, "user", "one"),
        (2, "assistant", "echo: one"),
        (3, "user", "two"),
        (4, "assistant", "echo: two"),
        (5, "user", "three"),
        (6, "assistant", "echo: three"),
    ]
    assert await stored(db, session_id) == expected

    restored = (await client.get(f"/api/sessions/{session_id}", headers=alice)).json()
    assert restored["agent_active"] is True
    assert [m["content"] for m in restored["messages"]] == [c for _, _, c in expected]
    status = (await client.get("/api/sessions/status", headers=ADMIN)).json()
    assert status["restores_total"] == restores_before + 1

    assert (await turn(client, alice, session_id, "four")).status_code == 201
    assert conversation(fake_llm.calls[-1]) == [(r, c) for _, r, c in expected] + [("user", "four")]
    assert len(fake_llm.calls) == 4


async def test_idle_agents_are_swept(
    llm_settings: Callable[..., Settings], alice: Headers, caplog: pytest.LogCaptureFixture
) -> None:
    settings = llm_settings(agent_max_age_seconds=1, agent_cleanup_interval_seconds=0.2)
    async with serve_app(settings) as client:
        session_id = await new_session(client, alice)
        assert (await turn(client, alice, session_id, "hi")).status_code == 201
        status = (await client.get("/api/sessions/status", headers=ADMIN)).json()
        assert status["active_agents"] == 1
        assert status["max_age_seconds"] == 1
        await asyncio.sleep(2)
        status = (await client.get("/api/sessions/status", headers=ADMIN)).json()
        assert status["active_agents"] == 0
        read = (await client.get(f"/api/sessions/{session_id}", headers=alice)).json()
        assert read["message_count"] == 2
    sweeps = [r.getMessage() for r in caplog.records if "agent sweep" in r.getMessage()]
    assert any(session_id in line and "released=1" in line for line in sweeps)


async def test_least_recently_used_agent_is_evicted(
    llm_settings: Callable[..., Settings], alice: Headers
) -> None:
    async with serve_app(llm_settings(agent_pool_max_size=3)) as client:
        first, second, third = [await new_session(client, alice) for _ in range(3)]
        await client.get(f"/api/sessions/{first}", headers=alice)  # first is now the freshest
        fourth = await new_session(client, alice)
        status = (await client.get("/api/sessions/status", headers=ADMIN)).json()
        assert status["max_agents"] == 3
        assert status["evictions_total"] == 1
        assert {a["session_id"] for a in status["agents"]} == {third, first, fourth}
        assert next(a["session_id"] for a in status["agents"]) == third  # most idle first
        assert (await turn(client, alice, second, "back")).status_code == 201
        status = (await client.get("/api/sessions/status", headers=ADMIN)).json()
        assert second in {a["session_id"] for a in status["agents"]}
        assert third not in {a["session_id"] for a in status["agents"]}
        assert status["evictions_total"] == 2


async def test_concurrent_turns_on_one_session_strictly_alternate(
    llm_client: AsyncClient, fake_llm: FakeLLM, alice: Headers, db: async_sessionmaker[AsyncSession]
) -> None:
    fake_llm.delay = 0.02
    session_id = await new_session(llm_client, alice)
    responses = await asyncio.gather(
        *(turn(llm_client, alice, session_id, f"q{i}") for i in range(20))
    )
    assert [r.status_code for r in responses] == [201] * 20
    rows = await stored(db, session_id)
    assert len(rows) == 40
    assert_one_writer(rows, fake_llm.calls)


async def test_two_replicas_interleave_turns_on_one_session(
    llm_settings: Callable[..., Settings],
    fake_llm: FakeLLM,
    alice: Headers,
    db: async_sessionmaker[AsyncSession],
) -> None:
    fake_llm.delay = 0.02
    async with serve_app(llm_settings()) as one, serve_app(llm_settings()) as two:
        session_id = await new_session(one, alice)
        # sequential, alternating replicas: each must see what the other wrote
        for i in range(4):
            replica = one if i % 2 == 0 else two
            assert (await turn(replica, alice, session_id, f"seq{i}")).status_code == 201
        # and concurrent, on both at once
        responses = await asyncio.gather(
            *(turn(one if i % 2 else two, alice, session_id, f"par{i}") for i in range(10))
        )
        assert [r.status_code for r in responses] == [201] * 10
    rows = await stored(db, session_id)
    assert len(rows) == 28
    assert_one_writer(rows, fake_llm.calls)


async def test_an_agent_rebuilt_mid_reply_gets_the_reply_once_it_is_stored(
    llm_settings: Callable[..., Settings],
    fake_llm: FakeLLM,
    alice: Headers,
    db: async_sessionmaker[AsyncSession],
) -> None:
    async with serve_app(llm_settings()) as one, serve_app(llm_settings()) as two:
        session_id = await new_session(one, alice)
        assert (await turn(one, alice, session_id, "first")).status_code == 201
        fake_llm.delay = 0.5
        slow = asyncio.create_task(turn(one, alice, session_id, "slow"))

        async def reply_in_progress() -> bool:
            return (await stored(db, session_id))[-1] == (4, "assistant", "")

        await eventually(reply_in_progress)
        # the other replica rebuilds its agent while the reply is being generated
        assert (await two.get(f"/api/sessions/{session_id}", headers=alice)).status_code == 200
        assert (await slow).status_code == 201
        fake_llm.delay = 0
        assert (await turn(two, alice, session_id, "after")).status_code == 201
    assert conversation(fake_llm.calls[-1]) == [
        ("user", "first"),
        ("assistant", "echo: first"),
        ("user", "slow"),
        ("assistant", "echo: slow"),
        ("user", "after"),
    ]


async def test_repeated_client_message_id_returns_the_stored_pair(
    llm_client: AsyncClient, fake_llm: FakeLLM, alice: Headers, db: async_sessionmaker[AsyncSession]
) -> None:
    session_id = await new_session(llm_client, alice)
    first = await turn(llm_client, alice, session_id, "hello", client_message_id="m-1")
    again = await turn(llm_client, alice, session_id, "hello", client_message_id="m-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert len(fake_llm.calls) == 1
    assert len(await stored(db, session_id)) == 2


@pytest.mark.parametrize("stream", [False, True])
async def test_a_repeated_client_message_id_with_other_content_is_a_conflict(
    llm_client: AsyncClient,
    fake_llm: FakeLLM,
    alice: Headers,
    db: async_sessionmaker[AsyncSession],
    stream: bool,
) -> None:
    session_id = await new_session(llm_client, alice)
    assert (await turn(llm_client, alice, session_id, "hello", client_message_id="m-1")).is_success
    fake_llm.fail_status = 503  # a failed turn's question stays stored, to be retried
    await turn(llm_client, alice, session_id, "failed", client_message_id="m-2")
    fake_llm.fail_status = None
    calls = len(fake_llm.calls)
    for client_message_id, content in (("m-1", "hello!"), ("m-2", "not what failed")):
        other = await turn(
            llm_client,
            alice,
            session_id,
            content,
            client_message_id=client_message_id,
            stream=stream,
        )
        assert other.status_code == 409, other.text
        assert "client_message_id" in other.json()["detail"]
        assert "different message" in other.json()["detail"]
    assert len(fake_llm.calls) == calls
    assert await stored(db, session_id) == [
        (1, "user", "hello"),
        (2, "assistant", "echo: hello"),
        (3, "user", "failed"),
    ]


async def test_concurrent_repeats_store_one_pair_and_call_once(
    llm_client: AsyncClient, fake_llm: FakeLLM, alice: Headers, db: async_sessionmaker[AsyncSession]
) -> None:
    fake_llm.delay = 0.2
    session_id = await new_session(llm_client, alice)
    responses = await asyncio.gather(
        *(turn(llm_client, alice, session_id, "once", client_message_id="dup") for _ in range(6))
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 5 + [201]
    assert len({r.json()["assistant_message"]["id"] for r in responses}) == 1
    assert len(fake_llm.calls) == 1
    assert await stored(db, session_id) == [(1, "user", "once"), (2, "assistant", "echo: once")]


@pytest.mark.parametrize(
    ("knob", "value", "status"), [("fail_status", 500, 502), ("drop", True, 502)]
)
async def test_llm_failure_keeps_the_question_and_the_next_turn_works(
    llm_client: AsyncClient,
    fake_llm: FakeLLM,
    alice: Headers,
    db: async_sessionmaker[AsyncSession],
    knob: str,
    value: object,
    status: int,
) -> None:
    session_id = await new_session(llm_client, alice)
    setattr(fake_llm, knob, value)
    failed = await turn(llm_client, alice, session_id, "lost?")
    assert failed.status_code == status
    assert "LLM" in failed.json()["detail"]
    assert len(fake_llm.calls) == 1  # no hidden retry
    assert await stored(db, session_id) == [(1, "user", "lost?")]
    setattr(fake_llm, knob, None if knob == "fail_status" else False)
    ok = await turn(llm_client, alice, session_id, "again")
    assert ok.status_code == 201
    assert conversation(fake_llm.calls[-1]) == [("user", "lost?"), ("user", "again")]
    assert [r[1:] for r in await stored(db, session_id)] == [
        ("user", "lost?"),
        ("user", "again"),
        ("assistant", "echo: again"),
    ]


async def test_llm_timeout_answers_504(
    llm_settings: Callable[..., Settings],
    fake_llm: FakeLLM,
    alice: Headers,
    db: async_sessionmaker[AsyncSession],
) -> None:
    fake_llm.delay = 3
    async with serve_app(llm_settings(llm_timeout_seconds=0.5)) as client:
        session_id = await new_session(client, alice)
        started = time.monotonic()
        response = await turn(client, alice, session_id, "slow?")
        assert response.status_code == 504
        assert time.monotonic() - started < 2.5
        assert response.json()["detail"]
    assert await stored(db, session_id) == [(1, "user", "slow?")]


async def test_retrying_a_failed_turn_with_its_client_message_id_answers_it(
    llm_client: AsyncClient, fake_llm: FakeLLM, alice: Headers, db: async_sessionmaker[AsyncSession]
) -> None:
    session_id = await new_session(llm_client, alice)
    fake_llm.fail_status = 503
    assert (
        await turn(llm_client, alice, session_id, "q", client_message_id="c1")
    ).status_code == 502
    fake_llm.fail_status = None
    retried = await turn(llm_client, alice, session_id, "q", client_message_id="c1")
    assert retried.status_code == 201
    assert await stored(db, session_id) == [(1, "user", "q"), (2, "assistant", "echo: q")]


async def test_an_agent_far_behind_is_rebuilt_not_fed_every_missing_row(
    llm_settings: Callable[..., Settings],
    fake_llm: FakeLLM,
    alice: Headers,
    db: async_sessionmaker[AsyncSession],
) -> None:
    async with serve_app(llm_settings(agent_history_max_tokens=120)) as client:
        session_id = await new_session(client, alice)
        assert (await turn(client, alice, session_id, "first")).status_code == 201
        # another replica answers 150 turns meanwhile: this replica's agent is 300 behind
        await add_messages(db, session_id, [f"elsewhere {n}" for n in range(300)])
        statements: list[str] = []

        def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            statements.append(statement)

        fake_llm.delay = 0.3
        event.listen(Engine, "before_cursor_execute", record)
        try:
            running = asyncio.create_task(turn(client, alice, session_id, "now"))
            await asyncio.sleep(0.15)  # the agent has been rebuilt; the LLM is answering
            # an admin releases every agent not in use: the rebuilt one is in use
            await client.post("/api/sessions/cleanup", json={"max_age_seconds": 0}, headers=ADMIN)
            response = await running
        finally:
            event.remove(Engine, "before_cursor_execute", record)
        status = (await client.get("/api/sessions/status", headers=ADMIN)).json()
    assert response.status_code == 201
    assert session_id in [agent["session_id"] for agent in status["agents"]]
    sent = conversation(fake_llm.calls[-1])
    assert sent[-2:] == [("assistant", "elsewhere 299"), ("user", "now")]
    assert 3 < len(sent) < 40  # the newest that fit the budget
    reads = [s for s in statements if "FROM chat_messages" in s]
    branch_reads = [s for s in reads if "WITH RECURSIVE" in s]  # up the branch, newest first
    # a page to look for the agent's newest message, then what the budget holds: rebuilt
    assert 1 <= len(branch_reads) <= 3
    assert not any("chat_messages.seq >" in s for s in reads)  # not every missing row


async def _lease_and_reply(
    db: async_sessionmaker[AsyncSession], session_id: str
) -> tuple[str | None, int | None]:
    async with db() as session:
        row = await session.get(ChatSession, session_id, populate_existing=True)
        assert row is not None
        return row.turn_lock_owner, row.generating_message_id


async def test_the_lease_is_taken_with_the_question_and_let_go_with_the_answer(
    llm_client: AsyncClient, fake_llm: FakeLLM, alice: Headers, db: async_sessionmaker[AsyncSession]
) -> None:
    session_id = await new_session(llm_client, alice)
    fake_llm.delay = 0.5
    running = asyncio.create_task(turn(llm_client, alice, session_id, "q"))

    async def question_stored() -> bool:
        return await stored(db, session_id) == [(1, "user", "q"), (2, "assistant", "")]

    await eventually(question_stored)
    owner, generating = await _lease_and_reply(db, session_id)
    assert owner is not None
    assert generating is not None
    assert (await running).status_code == 201
    assert await _lease_and_reply(db, session_id) == (None, None)


async def test_a_question_that_cannot_be_stored_takes_no_lease(
    llm_client: AsyncClient, fake_llm: FakeLLM, alice: Headers, db: async_sessionmaker[AsyncSession]
) -> None:
    session_id = await new_session(llm_client, alice)
    fake_llm.fail_status = 503
    assert (
        await turn(llm_client, alice, session_id, "a", client_message_id="a")
    ).status_code == 502
    fake_llm.fail_status = None
    assert (
        await turn(llm_client, alice, session_id, "b", client_message_id="b")
    ).status_code == 201
    # "a" is stored unanswered and is no longer the latest: refused inside the claim's transaction
    refused = await turn(llm_client, alice, session_id, "a", client_message_id="a")
    assert refused.status_code == 409
    assert await _lease_and_reply(db, session_id) == (None, None)
    assert [seq for seq, *_ in await stored(db, session_id)] == [1, 2, 3]


async def test_a_lease_whose_claim_may_have_committed_is_taken_again_at_once(
    llm_client: AsyncClient,
    alice: Headers,
    db: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    session_id, owner = await _session_and_owner(llm_client, alice)
    locks, store = _locks_and_store(db)
    # a lease this process could not release earlier (the database was down)
    async with db() as session:
        await session.execute(
            update(ChatSession)
            .where(ChatSession.session_id == session_id)
            .values(turn_lock_owner="earlier", turn_lock_expires_at=utcnow() + _seconds(30))
        )
        await session.commit()
    locks.unreleased[session_id] = {"earlier"}
    real_exit = AsyncSessionTransaction.__aexit__

    async def commit_then_fail(self: AsyncSessionTransaction, *exc_info: Any) -> None:
        await real_exit(self, *exc_info)  # commits
        raise ConnectionResetError("the answer to COMMIT was lost")

    monkeypatch.setattr(AsyncSessionTransaction, "__aexit__", commit_then_fail)
    lease = await locks.acquire(session_id, owner.id, wait_seconds=5, wait=True)
    with pytest.raises(ConnectionResetError):
        await store.first(lease, owner, session_id, Ask("a"))  # did it commit? unknown
    monkeypatch.undo()
    await lease.end()
    left_behind, _ = await _lease_and_reply(db, session_id)
    assert left_behind not in (None, "earlier")  # it did: 30 s to run
    started = time.monotonic()
    lease = await locks.acquire(session_id, owner.id, wait_seconds=5, wait=True)
    await store.first(lease, owner, session_id, Ask("b"))
    await lease.end()
    assert time.monotonic() - started < 1
    assert (await _lease_and_reply(db, session_id))[0] is None
    assert session_id not in locks.unreleased


async def test_a_holder_cancelled_while_letting_go_frees_the_session(
    llm_client: AsyncClient,
    alice: Headers,
    db: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    session_id, owner = await _session_and_owner(llm_client, alice)
    locks, store = _locks_and_store(db)
    real_release = TurnLocks.release

    async def slow_release(self: TurnLocks, session_id: str, token: str) -> None:
        await asyncio.sleep(0.3)  # a database slow to answer
        await real_release(self, session_id, token)

    monkeypatch.setattr(TurnLocks, "release", slow_release)
    claimed = asyncio.Event()

    async def holder() -> None:
        lease = await locks.acquire(session_id, owner.id, wait_seconds=5, wait=True)
        try:
            await store.first(lease, owner, session_id, Ask("a"))
            claimed.set()
        finally:
            await lease.end()

    async def next_turn() -> None:
        lease = await locks.acquire(session_id, owner.id, wait_seconds=3, wait=True)
        await store.first(lease, owner, session_id, Ask("b"))  # once the release has landed
        await lease.end()

    task = asyncio.create_task(holder())
    await claimed.wait()
    waiting = asyncio.create_task(next_turn())  # queued behind the holder in this process
    await asyncio.sleep(0.05)  # the holder is letting go, slowly
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await waiting
    assert (await _lease_and_reply(db, session_id))[0] is None


async def _session_and_owner(client: AsyncClient, headers: Headers) -> tuple[str, User]:
    session_id = await new_session(client, headers)
    owner = (await client.get(f"/api/sessions/{session_id}", headers=headers)).json()["user_id"]
    return session_id, User(id=str(owner), is_admin=False)


def _locks_and_store(db: async_sessionmaker[AsyncSession]) -> tuple[TurnLocks, TurnStore]:
    """A turn's lock and first write, as a replica of its own runs them."""
    return TurnLocks(db.kw["bind"], lease_seconds=30), TurnStore(db, reserve=db)


async def test_busy_session_rejects_or_times_out(
    llm_settings: Callable[..., Settings], fake_llm: FakeLLM, alice: Headers
) -> None:
    fake_llm.delay = 1.0
    async with serve_app(llm_settings(turn_lock_timeout_seconds=0.3)) as client:
        session_id = await new_session(client, alice)
        slow = asyncio.create_task(turn(client, alice, session_id, "slow"))
        await asyncio.sleep(0.3)
        started = time.monotonic()
        rejected = await turn(client, alice, session_id, "now?", if_busy="reject")
        assert rejected.status_code == 409
        assert time.monotonic() - started < 0.2
        waited = await turn(client, alice, session_id, "later?")
        assert waited.status_code == 409
        assert "another turn" in waited.json()["detail"]
        assert (await slow).status_code == 201
        assert (await turn(client, alice, session_id, "free")).status_code == 201


async def test_a_crashed_holders_lease_expires(
    llm_settings: Callable[..., Settings], alice: Headers, db: async_sessionmaker[AsyncSession]
) -> None:
    async with serve_app(llm_settings(turn_lock_timeout_seconds=5)) as client:
        session_id = await new_session(client, alice)
        async with db() as session:
            await session.execute(
                update(ChatSession)
                .where(ChatSession.session_id == session_id)
                .values(turn_lock_owner="dead-replica", turn_lock_expires_at=utcnow() + _seconds(1))
            )
            await session.commit()
        started = time.monotonic()
        response = await turn(client, alice, session_id, "after the crash")
        assert response.status_code == 201
        assert 0.5 < time.monotonic() - started < 4


def _seconds(value: float) -> Any:
    from datetime import timedelta

    return timedelta(seconds=value)


async def test_slow_turns_do_not_hold_database_connections(
    llm_settings: Callable[..., Settings], fake_llm: FakeLLM, alice: Headers
) -> None:
    fake_llm.delay = 1.0
    settings = llm_settings(db_pool_size=5, db_max_overflow=0)
    async with serve_app(settings) as client:
        sessions = [await new_session(client, alice) for _ in range(30)]
        started = time.monotonic()
        responses = await asyncio.gather(*(turn(client, alice, s, "slow") for s in sessions))
        elapsed = time.monotonic() - started
    assert [r.status_code for r in responses] == [201] * 30
    assert elapsed < 3.0, f"30 one-second turns on 5 connections took {elapsed:.1f}s"


async def test_history_sent_to_the_llm_is_bounded_by_the_token_budget(
    llm_settings: Callable[..., Settings], fake_llm: FakeLLM, alice: Headers
) -> None:
    async with serve_app(llm_settings(agent_history_max_tokens=120)) as client:
        session_id = await new_session(client, alice)
        for i in range(12):
            assert (
                await turn(client, alice, session_id, f"question {i} " + "word " * 20)
            ).status_code == 201
    last = conversation(fake_llm.calls[-1])
    assert last[0][0] == "user"  # the window starts on a question
    assert last[-1][1].startswith("question 11")
    assert len(last) < 23
    assert fake_llm.calls[-1]["messages"][0]["role"] == "system"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"content": ""}, 422),
        ({}, 422),
        ({"content": 5}, 422),
        ({"content": "x", "if_busy": "later"}, 422),
        ({"content": "x", "client_message_id": "c" * 65}, 422),
        ({"content": "x", "client_message_id": ""}, 422),
        ({"content": "x", "surprise": True}, 422),
        ({"content": "x" * 32001}, 413),
    ],
)
async def test_bad_turns_are_refused_before_anything_happens(
    llm_client: AsyncClient,
    fake_llm: FakeLLM,
    alice: Headers,
    db: async_sessionmaker[AsyncSession],
    body: dict[str, Any],
    status: int,
) -> None:
    session_id = await new_session(llm_client, alice)
    response = await llm_client.post(
        f"/api/sessions/{session_id}/messages", json=body, headers=alice
    )
    assert response.status_code == status
    assert response.json()["detail"]
    assert fake_llm.calls == []
    assert await stored(db, session_id) == []


async def test_longest_content_is_accepted(llm_client: AsyncClient, alice: Headers) -> None:
    session_id = await new_session(llm_client, alice)
    content = "😀" * 32000
    response = await turn(llm_client, alice, session_id, content)
    assert response.status_code == 201
    assert response.json()["user_message"]["content"] == content


async def test_turn_on_someone_elses_session_is_not_found(
    llm_client: AsyncClient, fake_llm: FakeLLM, alice: Headers, bob: Headers
) -> None:
    session_id = await new_session(llm_client, alice)
    foreign = await turn(llm_client, bob, session_id, "mine?")
    unknown = await turn(llm_client, bob, "nope", "mine?")
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json() == unknown.json()
    assert fake_llm.calls == []


async def test_admin_routes_need_admin(client: AsyncClient, alice: Headers) -> None:
    assert (await client.get("/api/sessions/status", headers=alice)).status_code == 403
    assert (await client.post("/api/sessions/cleanup", headers=alice)).status_code == 403
    assert (await client.get("/api/sessions/status")).status_code == 401
    assert (
        await client.post("/api/sessions/cleanup", json={"max_age_seconds": -1}, headers=ADMIN)
    ).status_code == 422
    status = (await client.get("/api/sessions/status", headers=ADMIN)).json()
    assert set(status) == {
        "active_agents",
        "max_agents",
        "max_age_seconds",
        "cleanup_interval_seconds",
        "evictions_total",
        "restores_total",
        "agents",
        "workers",
    }
    cleaned = await client.post("/api/sessions/cleanup", headers=ADMIN)
    assert set(cleaned.json()) == {"released", "active_agents", "workers"}


async def test_delete_releases_the_agent(client: AsyncClient, alice: Headers) -> None:
    session_id = await new_session(client, alice)
    await turn(client, alice, session_id, "hi")
    status = (await client.get("/api/sessions/status", headers=ADMIN)).json()
    assert session_id in {a["session_id"] for a in status["agents"]}
    assert (await client.delete(f"/api/sessions/{session_id}", headers=alice)).status_code == 204
    status = (await client.get("/api/sessions/status", headers=ADMIN)).json()
    assert session_id not in {a["session_id"] for a in status["agents"]}


async def test_session_context_reaches_the_system_prompt(
    llm_client: AsyncClient, fake_llm: FakeLLM, alice: Headers
) -> None:
    session_id = await new_session(llm_client, alice, context={"customer": "Zoë 𝄞"})
    await turn(llm_client, alice, session_id, "hi")
    assert "Zoë 𝄞" in fake_llm.calls[-1]["messages"][0]["content"]
    await llm_client.patch(
        f"/api/sessions/{session_id}", json={"context": {"customer": "Ana"}}, headers=alice
    )
    await turn(llm_client, alice, session_id, "hi again")
    system = fake_llm.calls[-1]["messages"][0]["content"]
    assert "Ana" in system
    assert "Zoë" not in system
