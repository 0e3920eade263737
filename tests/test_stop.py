"""Stopping a reply (api-v2 §2): at once on its replica, from another within 2 s; the LLM's
request closed; what was generated stored as `stopped`; streams ending with `message_end`;
`if_busy: interrupt`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from session_service.config import Settings
from session_service.db.models import ChatSession
from session_service.db.types import utcnow
from tests.conftest import serve_app
from tests.fakes.openai import FakeLLM
from tests.helpers import Headers, answered, eventually, new_session, stored, turn
from tests.sse import SseEvent, read_events, uvicorn_server

WORDS = 200


@pytest.fixture
def slow_llm(fake_llm: FakeLLM) -> FakeLLM:
    fake_llm.reply = lambda _messages: " ".join(f"w{i}" for i in range(WORDS))
    fake_llm.chunk_delay = 0.02
    return fake_llm


@pytest.fixture
async def http(llm_settings: Callable[..., Settings]) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        uvicorn_server(llm_settings()) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        yield client


async def _stopped_mid_stream(
    http: httpx.AsyncClient,
    stopper: httpx.AsyncClient,
    headers: Headers,
    session_id: str,
) -> tuple[list[SseEvent], httpx.Response, float]:
    """A streamed turn stopped (through `stopper`) after its fifth delta: its events, the
    stop's answer, and how long the stop took."""
    events: list[SseEvent] = []
    async with http.stream(
        "POST",
        f"/api/sessions/{session_id}/messages",
        json={"content": "a long answer, please", "stream": True},
        headers=headers,
    ) as response:
        assert response.status_code == 201
        stop: asyncio.Task[tuple[httpx.Response, float]] | None = None
        async for event in read_events(response):
            events.append(event)
            if stop is None and sum(e.name == "delta" for e in events) == 5:
                message_id = events[0].data["assistant_message_id"]
                stop = asyncio.create_task(_timed_stop(stopper, headers, session_id, message_id))
    assert stop is not None
    stopped, seconds = await stop
    return events, stopped, seconds


async def _timed_stop(
    client: httpx.AsyncClient, headers: Headers, session_id: str, message_id: int
) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await client.post(
        f"/api/sessions/{session_id}/messages/{message_id}/stop", headers=headers
    )
    return response, time.monotonic() - started


def _assert_stopped(events: list[SseEvent], stopped: httpx.Response) -> dict[str, Any]:
    assert stopped.status_code == 200, stopped.text
    message: dict[str, Any] = stopped.json()
    assert message["metadata"]["status"] == "stopped"
    assert events[-1].name == "message_end"
    assert events[-1].data["assistant_message"] == message
    deltas = "".join(e.data["text"] for e in events if e.name == "delta")
    assert deltas == message["content"]  # every delta sent is kept, and nothing else
    assert 0 < len(message["content"].split()) < WORDS
    return message


async def test_a_stop_ends_the_reply_and_its_llm_request(
    http: httpx.AsyncClient, slow_llm: FakeLLM, alice: Headers, db: async_sessionmaker[AsyncSession]
) -> None:
    session_id = await new_session(http, alice)
    events, stopped, seconds = await _stopped_mid_stream(http, http, alice, session_id)
    message = _assert_stopped(events, stopped)
    assert seconds < 1
    request = slow_llm.calls[-1]

    async def llm_saw_it_closed() -> bool:
        return any(r.json == request for r in slow_llm.server.cut_short)

    await eventually(llm_saw_it_closed, seconds=5)
    assert (await stored(db, session_id))[-1][2] == message["content"]
    # the rejoin of a stopped reply ends the same way
    async with http.stream(
        "GET", f"/api/sessions/{session_id}/messages/{message['id']}/stream", headers=alice
    ) as response:
        rejoined = [event async for event in read_events(response)]
    assert rejoined[-1].name == "message_end"
    assert rejoined[-1].data["assistant_message"] == message
    # and the conversation goes on after it, with what was said
    await answered(http, alice, session_id, "go on")
    assert slow_llm.calls[-1]["messages"][-2] == {
        "role": "assistant",
        "content": message["content"],
    }


async def test_a_stop_from_another_replica_takes_less_than_two_seconds(
    llm_settings: Callable[..., Settings], slow_llm: FakeLLM, alice: Headers
) -> None:
    async with (
        uvicorn_server(llm_settings()) as one,
        uvicorn_server(llm_settings()) as two,
        httpx.AsyncClient(base_url=one, timeout=30) as first,
        httpx.AsyncClient(base_url=two, timeout=30) as second,
    ):
        session_id = await new_session(first, alice)
        events, stopped, seconds = await _stopped_mid_stream(first, second, alice, session_id)
    _assert_stopped(events, stopped)
    assert seconds < 2


async def test_stopping_a_stored_reply_changes_nothing(
    llm_client: httpx.AsyncClient, alice: Headers, bob: Headers
) -> None:
    session_id = await new_session(llm_client, alice)
    pair = await answered(llm_client, alice, session_id, "one")
    reply = pair["assistant_message"]
    base = f"/api/sessions/{session_id}/messages"
    again = await llm_client.post(f"{base}/{reply['id']}/stop", headers=alice)
    assert again.status_code == 200
    assert again.json() == reply
    question = await llm_client.post(f"{base}/{pair['user_message']['id']}/stop", headers=alice)
    assert question.status_code == 422
    assert (await llm_client.post(f"{base}/{10**12}/stop", headers=alice)).status_code == 404
    assert (await llm_client.post(f"{base}/{reply['id']}/stop", headers=bob)).status_code == 404
    other = await new_session(llm_client, alice)
    elsewhere = f"/api/sessions/{other}/messages/{reply['id']}/stop"
    assert (await llm_client.post(elsewhere, headers=alice)).status_code == 404


async def _generating(client: httpx.AsyncClient, headers: Headers, session_id: str) -> int:
    """Once the session's first reply is being generated: its id."""

    async def started() -> bool:
        detail = (await client.get(f"/api/sessions/{session_id}", headers=headers)).json()
        return bool(detail["message_count"] == 2)

    await eventually(started)
    detail = (await client.get(f"/api/sessions/{session_id}", headers=headers)).json()
    return int(detail["active_message_id"])


async def test_a_stopped_whole_answer_is_given_to_its_waiting_request(
    llm_settings: Callable[..., Settings], fake_llm: FakeLLM, alice: Headers
) -> None:
    fake_llm.delay = 2  # not streamed: the answer comes whole, after a while
    async with serve_app(llm_settings()) as client:
        session_id = await new_session(client, alice)
        waiting = asyncio.create_task(turn(client, alice, session_id, "long, please"))

        reply_id = await _generating(client, alice, session_id)
        stopped = await client.post(
            f"/api/sessions/{session_id}/messages/{reply_id}/stop", headers=alice
        )
        answer = await waiting
    assert answer.status_code == 201
    assert answer.json()["assistant_message"] == stopped.json()
    assert stopped.json()["metadata"]["status"] == "stopped"
    assert stopped.json()["content"] == ""  # stopped before the answer came


async def test_interrupt_stops_the_running_reply_then_answers(
    llm_settings: Callable[..., Settings],
    fake_llm: FakeLLM,
    alice: Headers,
    db: async_sessionmaker[AsyncSession],
) -> None:
    fake_llm.delay = 2
    async with serve_app(llm_settings()) as client:
        session_id = await new_session(client, alice)
        first = asyncio.create_task(turn(client, alice, session_id, "long, please"))

        await _generating(client, alice, session_id)
        fake_llm.delay = 0
        fake_llm.reply = lambda _messages: "short"
        started = time.monotonic()
        second = await turn(client, alice, session_id, "never mind", if_busy="interrupt")
        assert time.monotonic() - started < 2
        assert second.status_code == 201, second.text
        interrupted = (await first).json()["assistant_message"]
        # with nothing running, interrupt is a plain turn
        idle = await turn(client, alice, session_id, "again", if_busy="interrupt")
        assert idle.status_code == 201
    assert interrupted["metadata"]["status"] == "stopped"
    assert second.json()["user_message"]["parent_id"] == interrupted["id"]
    assert [content for _, _, content in await stored(db, session_id)][2:] == [
        "never mind",
        "short",
        "again",
        "short",
    ]


async def test_a_reply_stopped_while_its_replica_had_lost_its_lease_stays_stopped(
    llm_settings: Callable[..., Settings],
    fake_llm: FakeLLM,
    alice: Headers,
    db: async_sessionmaker[AsyncSession],
) -> None:
    """Its replica cannot reach the database (here: its lease made to look expired), so the
    replica asked stops the reply itself; when the generating replica comes back with the
    whole reply, the stop stands, and both answers agree."""
    fake_llm.delay = 2
    async with serve_app(llm_settings()) as one, serve_app(llm_settings()) as two:
        session_id = await new_session(one, alice)
        running = asyncio.create_task(turn(one, alice, session_id, "long, please"))
        reply_id = await _generating(one, alice, session_id)
        async with db() as session:
            await session.execute(
                update(ChatSession)
                .where(col(ChatSession.session_id) == session_id)
                .values(turn_lock_expires_at=utcnow() - timedelta(seconds=1))
            )
            await session.commit()
        stopped = await two.post(
            f"/api/sessions/{session_id}/messages/{reply_id}/stop", headers=alice
        )
        answer = await running
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["metadata"]["status"] == "stopped"
    assert answer.status_code == 201
    assert answer.json()["assistant_message"] == stopped.json()
    assert (await stored(db, session_id))[-1][2] == stopped.json()["content"]
